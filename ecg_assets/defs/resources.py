"""Dagster resources: where data and artifacts live, and the (GPU-tagged) torch compute device."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import dagster as dg
import torch
from pydantic import Field

from ecg_assets.core.artifacts import PartitionArtifacts, pipeline_log
from ecg_assets.core.demo import ensure_demo_dataset
from ecg_assets.core.devices import resolve_device
from ecg_assets.core.settings import Settings
from ecg_assets.core.training import DeviceSettings


class EcgPathsResource(dg.ConfigurableResource):
    """Dataset root and artifacts root. An empty `data_dir` selects the generated synthetic demo."""

    data_dir: Optional[str] = Field(None, description="Folder whose sub-folders are datasets (ECG_DATA_DIR).")
    artifacts_dir: str = Field("artifacts", description="Root of every artifact (ECG_ARTIFACTS_DIR).")

    @classmethod
    def from_settings(cls, settings: Settings) -> "EcgPathsResource":
        return cls(
            data_dir=str(settings.data_dir) if settings.data_dir else None, artifacts_dir=str(settings.artifacts_dir)
        )

    def settings(self) -> Settings:
        return Settings(data_dir=Path(self.data_dir) if self.data_dir else None, artifacts_dir=Path(self.artifacts_dir))

    def artifacts(self, dataset: str) -> PartitionArtifacts:
        return PartitionArtifacts(Path(self.artifacts_dir), dataset)

    @property
    def pipeline_log(self) -> Path:
        return pipeline_log(Path(self.artifacts_dir))

    def dataset_dir(self, dataset: str) -> Path:
        """The dataset's folder; demo datasets are generated on first use. A missing folder is an error saying why."""
        settings = self.settings()
        if settings.is_demo_dataset(dataset):
            return ensure_demo_dataset(settings.demo_root, dataset)
        folder = settings.dataset_dir(dataset)
        if not folder.is_dir():
            where = f"ECG_DATA_DIR={settings.data_dir}" if settings.data_dir else "ECG_DATA_DIR is unset (the demo)"
            raise FileNotFoundError(
                f"dataset partition {dataset!r} has no folder: {folder} does not exist ({where}). Partitions persist "
                "once registered; this one may come from another ECG_DATA_DIR"
            )
        return folder


class TorchDeviceResource(dg.ConfigurableResource):
    """The compute device for training and inference (GPU-tagged: the training asset's pool is `gpu`).

    `auto` picks CUDA when available and otherwise falls back to the CPU with a warning (once per process).
    `processes_per_node` > 1 trains on that many torchrun processes (`ecg_assets.defs.torchrun`).
    """

    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="auto | cuda | cpu")
    mixed_precision: bool = Field(True, description="Autocast on CUDA: bf16 where supported, else fp16 + GradScaler.")
    compile: Optional[bool] = Field(
        None, description="Wrap the model in torch.compile (default: on for CUDA, off on the CPU where it rarely pays)."
    )
    prefetch_batches: Optional[int] = Field(
        None, ge=0, description="Batches assembled ahead in a background thread (default: 2 on CUDA, 0 on the CPU)."
    )
    processes_per_node: int = Field(
        1,
        ge=0,
        description="Training processes: above 1, trained_model runs torchrun with DistributedDataParallel (one "
        "process per GPU; gloo on the CPU); 0: one per visible CUDA device.",
    )

    def device_settings(self) -> DeviceSettings:
        """Resolve the configured device into what the training loop needs (`core.devices`, shared with predict)."""
        return resolve_device(self.device, self.mixed_precision, self.compile, self.prefetch_batches)

    def process_count(self) -> int:
        """How many training processes to launch: `processes_per_node`, or one per visible CUDA device when 0."""
        gpus = torch.cuda.device_count() if self.device != "cpu" else 0
        processes = self.processes_per_node or max(gpus, 1)
        if gpus and processes > gpus:
            raise ValueError(
                f"processes_per_node={processes}, but {gpus} CUDA device(s) are visible: one process per GPU"
            )
        return processes

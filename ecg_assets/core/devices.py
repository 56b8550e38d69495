"""The one place a device request (`auto`, `cuda`, `cpu`) becomes the settings training and inference run with.

Used by the Dagster `gpu` resource (`TorchDeviceResource`) and by `predict`, so both pick the
same device, dtype and loader flags for the same request.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch

from ecg_assets.core.training import DeviceSettings

logger = logging.getLogger(__name__)

DeviceRequest = Literal["auto", "cuda", "cpu"]
DEVICE_REQUESTS = ("auto", "cuda", "cpu")
# Where a pipeline user sets the device (run config of the `gpu` resource).
DEVICE_SETTING_HINT = "resources.gpu.config.device"

_warned_cpu_fallback = False


def resolve_device(
    request: str = "auto",
    mixed_precision: bool = True,
    compile: bool | None = None,
    prefetch_batches: int | None = None,
    setting_hint: str = DEVICE_SETTING_HINT,
) -> DeviceSettings:
    """Settings for `request`: `cuda` (refused without CUDA), `cpu`, or `auto` (CUDA when available, else the CPU).

    The CPU fallback of `auto` is logged once per process, naming `setting_hint`, where the
    caller's users choose the device. On CUDA: autocast in bf16 where supported (else fp16),
    pinned memory, non-blocking copies, 2 batches prefetched and `torch.compile`; on the CPU none
    of that, unless `compile` / `prefetch_batches` say otherwise.
    """
    global _warned_cpu_fallback
    if request not in DEVICE_REQUESTS:
        raise ValueError(f"device must be one of {', '.join(DEVICE_REQUESTS)}, not {request!r}")
    cuda_available = torch.cuda.is_available()
    if request == "cuda" and not cuda_available:
        raise RuntimeError("device='cuda' was requested but torch.cuda.is_available() is False")
    if request == "auto" and not cuda_available and not _warned_cpu_fallback:
        _warned_cpu_fallback = True
        logger.warning("no CUDA device available: using the CPU (set %s to 'cpu' to silence this)", setting_hint)
    on_cuda = cuda_available and request != "cpu"
    amp_dtype = None
    if on_cuda and mixed_precision:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return DeviceSettings(
        device=torch.device("cuda" if on_cuda else "cpu"),
        amp_dtype=amp_dtype,
        non_blocking=on_cuda,
        pin_memory=on_cuda,
        prefetch_batches=prefetch_batches if prefetch_batches is not None else (2 if on_cuda else 0),
        compile=compile if compile is not None else on_cuda,
    )

"""The optional `dataset.yaml` of a dataset folder: what the files themselves do not say.

```yaml
format: mat              # skip detection: ptbxl, ptb_diagnostic, cpsc2018, cinc2017, cinc2021, mat, wfdb
sampling_rate: 500       # Hz, for MAT files and headers without a (valid) rate
lead_names: [I, II, V1]  # for MAT files and headers without lead names
mat_variable: val        # the MAT variable holding the [leads, samples] matrix, or a struct field (ECG.data)
gain: 1000               # ADC units per mV of MAT files
```

The `format` names are those of `ecg_assets.core.datasets.FORMATS`, in its order (a test compares them).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ecg_assets.core.labels import LabelMappingError
from ecg_assets.core.paths import OutsideFolderError, dataset_file
from ecg_assets.core.readers import SignalDefaults
from ecg_assets.core.textfiles import decode_text

CONFIG_FILE_NAME = "dataset.yaml"


class DatasetConfigError(ValueError):
    """A dataset.yaml that cannot be used: stops the partition with the reason."""


class DatasetConfig(BaseModel):
    """Settings a dataset folder states about itself (every field optional)."""

    model_config = ConfigDict(extra="forbid")

    format: str | None = Field(None, description="Layout name; skips auto-detection.")
    sampling_rate: float | None = Field(None, gt=0, description="Hz, where the files do not state it.")
    lead_names: tuple[str, ...] | None = Field(None, min_length=1, description="Channel names, in file order.")
    mat_variable: str = Field(
        "val",
        pattern=r"^[A-Za-z]\w*(\.[A-Za-z]\w*)*$",
        description="MAT variable holding the signal matrix, or a field of a struct variable (`ECG.data`).",
    )
    gain: float = Field(1.0, gt=0, description="ADC units per mV of MAT files.")

    @property
    def signal_defaults(self) -> SignalDefaults:
        return SignalDefaults(fs=self.sampling_rate, lead_names=self.lead_names)


def load_dataset_config(folder: Path) -> DatasetConfig:
    """The folder's dataset.yaml, or defaults when there is none; `DatasetConfigError` names what is wrong."""
    path = folder / CONFIG_FILE_NAME
    if not path.is_file():
        return DatasetConfig()
    try:
        dataset_file(folder, CONFIG_FILE_NAME)
    except OutsideFolderError as error:
        raise DatasetConfigError(str(error)) from error
    stat = path.stat()
    return _load(path, stat.st_mtime_ns, stat.st_size)  # re-read whenever the file changes


@lru_cache(maxsize=64)
def _load(path: Path, mtime_ns: int, size: int) -> DatasetConfig:
    try:
        content = yaml.safe_load(decode_text(path.read_bytes(), str(path))) or {}
    except LabelMappingError as error:  # not text in a Unicode encoding
        raise DatasetConfigError(str(error)) from error
    except (OSError, yaml.YAMLError) as error:
        raise DatasetConfigError(f"{path}: not readable YAML ({error})") from error
    if not isinstance(content, dict):
        raise DatasetConfigError(f"{path}: expected a mapping of settings, found {type(content).__name__}")
    try:
        return DatasetConfig.model_validate(content)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, item['loc'])) or 'file'}: {item['msg']}" for item in error.errors())
        raise DatasetConfigError(f"{path}: {problems}") from error

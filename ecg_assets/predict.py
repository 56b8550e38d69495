"""`python -m ecg_assets.predict`: the documented entry point; the command is `ecg_assets.cli.predict`, the logic
`ecg_assets.core.inference`."""

import sys

from ecg_assets.cli.predict import main
from ecg_assets.core.inference import load_model, predict_folder

__all__ = ["load_model", "main", "predict_folder"]

if __name__ == "__main__":
    sys.exit(main())

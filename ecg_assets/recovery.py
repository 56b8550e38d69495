"""`python -m ecg_assets.recovery`: the documented entry point; see `ecg_assets.cli.recovery`."""

import sys

from ecg_assets.cli.recovery import main

if __name__ == "__main__":
    sys.exit(main())

import os
import sys

# Other processes may share the cores: OpenMP threads that spin while waiting for a descheduled
# sibling slow torch down several-fold; passive waiting keeps the figures meaningful. Must be
# set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchmarks.run import main  # noqa: E402

sys.exit(main())

"""Peak memory of `process_records` over the first N CinC 2017 records, in a fresh process.

`python -m benchmarks.peak_rss DATA_DIR N OUT_DIR` processes the records and prints the peak
resident memory of the main process (`VmHWM`: its own address space only, unlike `ru_maxrss`,
which Linux carries over from the process that launched it) and of its largest worker
(`getrusage(RUSAGE_CHILDREN)`: exact peaks rather than samples). `measure_peak_rss` adds them
up as main + workers x largest worker: an upper bound, since forked workers share most of
their pages with the main process.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

from ecg_assets.core.datasets import detect_format
from ecg_assets.core.label_mapping import build_label_mapping
from ecg_assets.core.preprocessing import RecordProcessingConfig, process_records

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def measure_peak_rss(data_dir: Path, n_records: int, out_dir: Path) -> float:
    """Peak resident memory (MiB) of a fresh `process_records` run over `n_records`, workers included."""
    command = [sys.executable, "-m", "benchmarks.peak_rss", str(data_dir), str(n_records), str(out_dir)]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, check=True, capture_output=True, text=True)
    peaks = json.loads(completed.stdout.strip().splitlines()[-1])
    return peaks["main_mb"] + peaks["workers"] * peaks["largest_worker_mb"]


def _own_peak_kib() -> float:
    """Peak resident memory of this process's own address space (`VmHWM`), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: the best available


def main() -> None:
    data_dir, n_records, out_dir = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    dataset = data_dir / "cinc2017"
    records = build_label_mapping(dataset, "cinc2017").included.head(n_records)
    _, report = process_records(dataset, detect_format(dataset), records, out_dir, RecordProcessingConfig())
    kib = 1024  # ru_maxrss is in KiB on Linux
    peaks = {
        "records": report.processed,
        "workers": report.workers if report.workers > 1 else 0,
        "main_mb": _own_peak_kib() / kib,
        "largest_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib,
    }
    print(json.dumps(peaks))


if __name__ == "__main__":
    main()

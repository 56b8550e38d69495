"""Peak memory of `process_records` over the first N CinC 2017 records, measured from outside.

`python -m benchmarks.peak_rss DATA_DIR N OUT_DIR` processes the records (run it through
`measure_peak_rss`, which samples the resident memory of that process and its workers).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

from ecg_assets.core.datasets import detect_layout
from ecg_assets.core.label_mapping import build_label_mapping
from ecg_assets.core.preprocessing import RecordProcessingConfig, process_records


def measure_peak_rss(data_dir: Path, n_records: int, out_dir: Path, interval_s: float = 0.01) -> float:
    """Largest sum of resident memory (MiB) of a fresh `process_records` process and its worker processes."""
    command = [sys.executable, "-m", "benchmarks.peak_rss", str(data_dir), str(n_records), str(out_dir)]
    child = psutil.Popen(command, cwd=Path(__file__).resolve().parents[1])
    peak = 0
    while child.poll() is None:
        total = 0
        try:
            for process in [child, *child.children(recursive=True)]:
                total += process.memory_info().rss
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(interval_s)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, command)
    return peak / 2**20


def main() -> None:
    data_dir, n_records, out_dir = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    dataset = data_dir / "cinc2017"
    records = build_label_mapping(dataset, "cinc2017").included.head(n_records)
    process_records(dataset, detect_layout(dataset), records, out_dir, RecordProcessingConfig())


if __name__ == "__main__":
    main()

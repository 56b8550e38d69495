"""Cost of the sensor's dataset fingerprint (names, sizes, mtimes) against hashing file contents.

    .venv/bin/python benchmarks/bench_dataset_fingerprint.py [FOLDER]

FOLDER defaults to ../shared/data/cinc2017 (3000 recordings) when present, else a generated
folder of 3000 files of 18 KB. Both methods walk the same folder in the same run, best of 5
repeats (the contents are in the page cache after the first pass, which flatters the baseline).
Writes benchmarks/results/dataset_fingerprint.json.
"""

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmark_results import write_result

from ecg_assets.core.fingerprint import folder_fingerprint

ROOT = Path(__file__).resolve().parent
REPEATS = 5


def content_hash(folder: Path) -> str:
    """Baseline: sha256 over every file's bytes, in sorted path order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def best_seconds(function, folder: Path) -> float:
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        function(folder)
        timings.append(time.perf_counter() - started)
    return min(timings)


def generated_folder(base: Path, files: int = 3000, size: int = 18_000) -> Path:
    folder = base / "generated"
    folder.mkdir()
    payload = os.urandom(size)
    for index in range(files):
        (folder / f"A{index:05d}.mat").write_bytes(payload)
    return folder


def main() -> None:
    shared = ROOT.parent.parent / "shared" / "data" / "cinc2017"
    with tempfile.TemporaryDirectory() as scratch:
        folder = (
            Path(sys.argv[1]) if len(sys.argv) > 1 else shared if shared.is_dir() else generated_folder(Path(scratch))
        )
        files = [path for path in folder.rglob("*") if path.is_file()]
        fingerprint_s = best_seconds(lambda path: folder_fingerprint([path]), folder)
        content_s = best_seconds(content_hash, folder)
    result = {
        "folder": str(folder),
        "files": len(files),
        "bytes": sum(path.stat().st_size for path in files),
        "fingerprint_seconds": round(fingerprint_s, 5),
        "content_hash_seconds": round(content_s, 5),
        "speedup_vs_content_hash": round(content_s / fingerprint_s, 1),
        "repeats": REPEATS,
    }
    write_result("dataset_fingerprint", result)


if __name__ == "__main__":
    main()

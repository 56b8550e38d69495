"""What duplicate detection across datasets costs: the per-record fingerprint `processed_records` now
computes, and the search over every store.

    .venv/bin/python benchmarks/bench_signal_fingerprint.py [--data ../shared/data]

1. `processed_records` on the 2 901 labelled CinC 2017 records (cold, the default settings: 60-s
   windows), with the fingerprint and with it replaced by a no-op, interleaved, best of 3 each:
   the throughput ratio is the fingerprint's cost.
2. The fingerprint alone, per record, on the stored rows (µs).
3. `find_duplicates` over the real cinc2017, cinc2021 and wfdb_samples stores: seconds, candidate
   pairs and confirmed pairs.
4. The candidate search alone on 65 000 fingerprints (about PTB-XL + CinC 2021): real CinC 2017
   fingerprints, each repeated with independent ±4-step noise per block so that the copies are
   distinct records.

Writes benchmarks/results/signal_fingerprint.json.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_results import write_result  # noqa: E402

from ecg_assets.core import preprocessing  # noqa: E402
from ecg_assets.core.datasets import detect_format  # noqa: E402
from ecg_assets.core.duplicates import candidate_pairs, find_duplicates  # noqa: E402
from ecg_assets.core.label_mapping import build_label_mapping  # noqa: E402
from ecg_assets.core.preprocessing import RecordProcessingConfig, process_records  # noqa: E402
from ecg_assets.core.signal_fingerprint import parse_fingerprint, signal_fingerprint  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REPEATS = 3
SCALE_RECORDS = 65_000


def _process(dataset: Path, store_dir: Path) -> tuple[float, object]:
    records = build_label_mapping(dataset, dataset.name).included
    started = time.perf_counter()
    store, report = process_records(dataset, detect_format(dataset), records, store_dir, RecordProcessingConfig())
    return report.processed / (time.perf_counter() - started), store


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    real = preprocessing.signal_fingerprint
    with tempfile.TemporaryDirectory(prefix="ecg-bench-fp-") as scratch:
        work = Path(scratch)
        with_fp, without_fp = [], []
        for attempt in range(REPEATS):
            rate, store = _process(args.data / "cinc2017", work / f"with-{attempt}")
            with_fp.append(rate)
            preprocessing.signal_fingerprint = lambda rows, lead_mask, flat_mask: ""
            try:
                without_fp.append(_process(args.data / "cinc2017", work / f"without-{attempt}")[0])
            finally:
                preprocessing.signal_fingerprint = real
        flat = np.zeros(12, dtype=bool)
        rows = [store.stored_signal(position)[store.lead_masks[position]] for position in range(len(store))]
        started = time.perf_counter()
        for position, row in enumerate(rows):
            signal_fingerprint(row, store.lead_masks[position], flat)
        per_record_us = (time.perf_counter() - started) / len(rows) * 1e6

        stores = {"cinc2017": store}
        for name in ("cinc2021", "wfdb_samples"):
            stores[name] = _process(args.data / name, work / name)[1]
        report = find_duplicates(stores)

        parsed = [parse_fingerprint(text) for text in store.index["signal_fingerprint"]]
        blocks = np.stack([values for _, values in filter(None, parsed)]).astype(np.int16)
        copies = -(-SCALE_RECORDS // len(blocks))
        rng = np.random.default_rng(0)
        noise = rng.integers(-4, 5, (SCALE_RECORDS, blocks.shape[1]))
        scaled = np.clip(np.tile(blocks, (copies, 1))[:SCALE_RECORDS] + noise, 0, 255)
        started = time.perf_counter()
        candidates = candidate_pairs(np.zeros(SCALE_RECORDS, dtype=np.int64), scaled.astype(np.int16))
        scale_seconds = time.perf_counter() - started
    write_result(
        "signal_fingerprint",
        {
            "cinc2017_records": len(store),
            "preprocess_records_per_s_with_fingerprint": round(max(with_fp), 1),
            "preprocess_records_per_s_without_fingerprint": round(max(without_fp), 1),
            "fingerprint_throughput_ratio": round(max(with_fp) / max(without_fp), 3),
            "fingerprint_us_per_record": round(per_record_us, 1),
            "find_duplicates_records": report.records,
            "find_duplicates_seconds": round(report.seconds, 3),
            "find_duplicates_candidates": report.candidates,
            "find_duplicates_confirmed": len(report.pairs),
            "confirmed_pairs": [f"{pair.first} = {pair.second} (r={pair.correlation:.4f})" for pair in report.pairs],
            "candidate_search_records": SCALE_RECORDS,
            "candidate_search_seconds": round(scale_seconds, 2),
            "candidate_search_pairs": len(candidates),
            "repeats": REPEATS,
        },
    )


if __name__ == "__main__":
    main()

"""The benchmark's baseline must be faithful: same tensors as the store, one file per record."""

import numpy as np
import torch

from benchmarks.npz_baseline import npz_loader, preprocess_to_npz
from ecg_assets.core.datasets import detect_format
from ecg_assets.core.label_mapping import build_label_mapping
from ecg_assets.core.preprocessing import RecordProcessingConfig, process_records


def test_npz_baseline_holds_the_same_tensors_as_the_store(demo_root, tmp_path):
    folder = demo_root / "demo_cinc2017"
    records = build_label_mapping(folder, "demo_cinc2017").included.head(20)
    dataset_format = detect_format(folder)
    store, _ = process_records(
        folder, dataset_format, records, tmp_path / "store", RecordProcessingConfig(training_window_s=0)
    )
    files = preprocess_to_npz(folder, dataset_format, records, tmp_path / "npz")
    assert [path.stem for path in files] == store.index["record_id"].tolist()
    for position, path in enumerate(files):
        with np.load(path) as archive:
            assert archive["signal"].dtype == np.float32
            np.testing.assert_allclose(store.signal(position), archive["signal"], atol=5e-3, rtol=2e-3)
    batches = list(npz_loader(files, batch_size=8, num_workers=0))
    assert sum(len(labels) for _, labels in batches) == 20 and batches[0][0].shape == (8, 12, 5000)
    assert sorted(torch.cat([labels for _, labels in batches]).tolist()) == sorted(store.index["label_index"])

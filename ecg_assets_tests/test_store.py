import numpy as np
import pytest

from ecg_assets.core.store import MANIFEST, RecordStore, RecordStoreWriter


def _rows(n, seed=0):
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(size=(12, 50)).astype(np.float32), {"record_id": f"r{i}", "label_index": i % 5}) for i in range(n)
    ]


def test_round_trip_across_shards_in_float16(tmp_path):
    rows = _rows(7)
    with RecordStoreWriter(tmp_path, (12, 50), shard_size=3) as writer:
        for signal, row in rows:
            writer.append(signal, row)
        store = writer.commit()
    assert len(store) == 7 and len(store.manifest["shards"]) == 3
    assert store.index["record_id"].tolist() == [f"r{i}" for i in range(7)]
    batch = store.signals([6, 0, 3])
    assert batch.dtype == np.float32 and batch.shape == (3, 12, 50)
    for got, index in zip(batch, [6, 0, 3]):
        np.testing.assert_allclose(got, rows[index][0], atol=2e-3, rtol=1e-3)
    shard = np.load(tmp_path / store.manifest["shards"][2]["file"], mmap_mode="r")
    assert isinstance(shard, np.memmap) and shard.shape == (1, 12, 50)


def test_failed_write_keeps_previous_generation(tmp_path):
    with RecordStoreWriter(tmp_path, (12, 50)) as writer:
        for signal, row in _rows(2):
            writer.append(signal, row)
        first = writer.commit()
    with pytest.raises(RuntimeError):
        with RecordStoreWriter(tmp_path, (12, 50)) as writer:
            for signal, row in _rows(4, seed=1):
                writer.append(signal, row)
            raise RuntimeError("killed mid-write")
    reopened = RecordStore(tmp_path)
    assert reopened.generation == first.generation and len(reopened) == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(path.name for path in first.files())


def test_new_generation_replaces_old_files(tmp_path):
    for seed in (0, 1):
        with RecordStoreWriter(tmp_path, (12, 50)) as writer:
            for signal, row in _rows(2, seed):
                writer.append(signal, row)
            store = writer.commit()
    assert {path.name for path in tmp_path.iterdir()} == {path.name for path in store.files()}


def test_empty_store(tmp_path):
    with RecordStoreWriter(tmp_path, (12, 50)) as writer:
        store = writer.commit()
    assert len(store) == 0 and (tmp_path / MANIFEST).is_file()


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no processed-record store"):
        RecordStore(tmp_path)


def _supports_sparse_files(folder) -> bool:
    probe = folder / "probe"
    with probe.open("wb") as handle:
        handle.seek(1 << 20)
        handle.write(b"\0")
    sparse = probe.stat().st_blocks * 512 < (1 << 20)
    probe.unlink()
    return sparse


def test_windows_round_trip_and_crops(tmp_path):
    long_window = np.arange(2 * 120, dtype=np.float32).reshape(2, 120) / 100
    mask = "110000000000"
    with RecordStoreWriter(tmp_path, (12, 50)) as writer:
        writer.append(np.ones((12, 50), np.float32), {"record_id": "short", "lead_mask": mask})
        writer.append(np.ones((12, 50), np.float32), {"record_id": "long", "lead_mask": mask}, long_window)
        store = writer.commit()
    assert store.window(0) is None and store.window_samples.tolist() == [0, 120]
    full = store.window(1)
    assert full.shape == (12, 120) and not full[2:].any()
    np.testing.assert_allclose(full[:2], long_window, atol=1e-2)
    crops = store.window_crops([1, 1], [0, 100], 50)
    np.testing.assert_allclose(crops[0, :2], long_window[:, :50], atol=1e-2)
    np.testing.assert_allclose(crops[1, :2, :20], long_window[:, 100:], atol=1e-2)
    assert not crops[1, :, 20:].any()  # past the end of the window: zeros
    with pytest.raises(ValueError, match="has no window"):
        store.window_crops([0], [0], 50)


def test_absent_leads_are_not_written(tmp_path):
    signal = np.zeros((12, 4096), np.float32)
    signal[0] = 1.0
    with RecordStoreWriter(tmp_path, (12, 4096)) as writer:
        for index in range(8):
            writer.append(signal, {"record_id": f"r{index}"})
        store = writer.commit()
    np.testing.assert_array_equal(store.signals(np.arange(8)), np.broadcast_to(signal, (8, 12, 4096)))
    assert store.disk_bytes() <= store.nbytes()
    if _supports_sparse_files(tmp_path):
        assert store.disk_bytes() < store.nbytes() / 4  # one lead of twelve on disk


def test_gather_reads_only_present_leads_but_returns_all(tmp_path):
    first, second = np.zeros((12, 50), np.float32), np.zeros((12, 50), np.float32)
    first[0], second[1] = 1.0, 2.0
    with RecordStoreWriter(tmp_path, (12, 50)) as writer:
        writer.append(first, {"record_id": "a", "lead_mask": "100000000000"})
        writer.append(second, {"record_id": "b", "lead_mask": "010000000000"})
        store = writer.commit()
    np.testing.assert_array_equal(store.signals([1, 0, 1]), np.stack([second, first, second]))
    assert store.lead_masks.tolist()[0][:2] == [True, False]


def test_appending_only_the_present_leads_writes_the_same_shard(tmp_path):
    rng = np.random.default_rng(5)
    mask = np.zeros(12, bool)
    mask[[0, 1, 2, 7]] = True
    rows = rng.normal(size=(4, 4096)).astype(np.float32)
    rows[1] = 0.0  # a present lead that is flat (zeros): not written either way
    full = np.zeros((12, 4096), np.float32)
    full[mask] = rows
    stores = []
    for name, kwargs in (("full", {}), ("present", {"lead_mask": mask})):
        with RecordStoreWriter(tmp_path / name, (12, 4096)) as writer:
            for index in range(3):
                writer.append(full if not kwargs else rows, {"record_id": f"r{index}"}, **kwargs)
            stores.append(writer.commit())
    np.testing.assert_array_equal(
        stores[1].signals(np.arange(3)), np.broadcast_to(full.astype(np.float16), (3, 12, 4096))
    )
    assert stores[0].disk_bytes() == stores[1].disk_bytes()
    with pytest.raises(ValueError, match="store row shape"):
        RecordStoreWriter(tmp_path / "bad", (12, 4096)).append(rows[:3], {"record_id": "x"}, lead_mask=mask)

import numpy as np
import pytest
import torch

from ecg_assets.core.data import StoreBatches, WindowBatches, augment, prefetch, shift_in_time, window_starts
from ecg_assets.core.store import RecordStoreWriter

LENGTH = 100


@pytest.fixture
def windowed_store(tmp_path):
    """Records 0-2 without a window; 3-5 with windows of 250, 180 and 101 samples (lead I and II)."""
    with RecordStoreWriter(tmp_path, (12, LENGTH)) as writer:
        for index in range(6):
            signal = np.zeros((12, LENGTH), np.float32)
            signal[:2] = np.arange(1, LENGTH + 1) / 100
            row = {"record_id": f"r{index}", "label_index": index % 2, "lead_mask": "110000000000"}
            window = None
            if index >= 3:
                samples = (250, 180, 101)[index - 3]
                window = np.tile(np.arange(1, samples + 1, dtype=np.float32) / 1000, (2, 1))
            writer.append(signal, row, window)
        return writer.commit()


def test_training_crops_come_from_the_window_and_shifts_keep_length(windowed_store):
    store = windowed_store
    labels = store.index["label_index"].to_numpy()
    batches = StoreBatches(
        store, np.arange(6), labels, 6, generator=torch.Generator().manual_seed(0), random_crops=True, max_shift=10
    )
    for _ in range(5):
        signals = batches.gather(np.arange(6))
        assert signals.shape == (6, 12, LENGTH) and not signals[:, 2:].any()
        for row in (3, 4, 5):  # a crop: consecutive window values, fully inside the window
            crop = signals[row, 0]
            start = int(round(crop[0] * 1000)) - 1
            assert 0 <= start <= store.window_samples[row] - LENGTH
            np.testing.assert_allclose(crop, np.arange(start + 1, start + LENGTH + 1) / 1000, atol=1e-3)
        for row in (0, 1, 2):  # a shift of the canonical tensor: the ramp moved by at most 10 samples
            nonzero = np.flatnonzero(signals[row, 0])
            assert LENGTH - 10 <= len(nonzero) <= LENGTH
    plain = StoreBatches(store, np.arange(6), labels, 6).gather(np.arange(6))
    np.testing.assert_array_equal(plain, store.signals(np.arange(6)))


def test_shift_in_time_zero_fills():
    signals = np.tile(np.arange(1, 6, dtype=np.float32), (2, 1, 1))
    shift_in_time(signals, np.array([2, -1]))
    assert signals[0, 0].tolist() == [0, 0, 1, 2, 3] and signals[1, 0].tolist() == [2, 3, 4, 5, 0]


def test_window_starts_cover_the_record():
    assert window_starts(250, 100, 50) == [0, 50, 100, 150]
    assert window_starts(180, 100, 50) == [0, 50, 80]
    assert window_starts(100, 100, 50) == [0] and window_starts(250, 100, 0) == [0]


def test_inference_windows_are_grouped_by_record(windowed_store):
    store = windowed_store
    labels = store.index["label_index"].to_numpy()
    batches = WindowBatches(store, [0, 3, 4], labels, batch_size=4, stride=50)
    rows = [(signals, targets, groups) for signals, targets, groups in batches]
    groups = np.concatenate([group for _, _, group in rows])
    assert groups.tolist() == [0, 1, 1, 1, 1, 2, 2, 2]  # record 0: canonical; 3: 4 windows; 4: 3 windows
    signals = torch.cat([signal for signal, _, _ in rows]).numpy()
    np.testing.assert_array_equal(signals[0], store.signal(0))
    np.testing.assert_allclose(signals[4, 0], np.arange(151, 251) / 1000, atol=1e-3)  # last window flush with the end
    assert len(WindowBatches(store, [0, 3, 4], labels, 4, stride=0).items) == 3  # stride 0: canonical only


def test_augment_leaves_absent_leads_at_zero():
    signals = torch.zeros(4, 12, 50)
    signals[:, 0] = 1.0
    out = augment(signals.clone(), noise_std=0.1, scale_range=0.2, generator=torch.Generator().manual_seed(0))
    assert not out[:, 1:].any() and (out[:, 0] != 1.0).all()


def test_prefetch_keeps_order_and_raises_errors():
    assert list(prefetch(iter(range(20)), depth=3)) == list(range(20))

    def broken():
        yield 1
        raise RuntimeError("bad batch")

    with pytest.raises(RuntimeError, match="bad batch"):
        list(prefetch(broken(), depth=2))
    stream = prefetch(iter(range(1000)), depth=2)
    assert next(stream) == 0
    stream.close()  # abandoning the iteration stops the producer thread


def test_longer_rows_pad_canonical_records_and_crop_windows(windowed_store):
    store = windowed_store
    labels = store.index["label_index"].to_numpy()
    batches = StoreBatches(
        store, np.arange(6), labels, 6, generator=torch.Generator().manual_seed(1), random_crops=True, length=200
    )
    signals = batches.gather(np.arange(6))
    assert signals.shape == (6, 12, 200)
    np.testing.assert_array_equal(signals[0, :, :LENGTH], store.signal(0)) and not signals[0, :, LENGTH:].any()
    starts = [int(round(signals[row, 0, 0] * 1000)) - 1 for row in (3, 4, 5)]
    assert 0 <= starts[0] <= 50 and starts[1] == starts[2] == 0  # windows of 180 and 101 samples fit whole
    assert not signals[5, :, 101:].any()
    windows = WindowBatches(store, [0, 3], labels, batch_size=8, stride=50, length=200)
    assert windows.items[:, 2].tolist() == [-1, 0, 50]
    assert next(iter(windows))[0].shape == (3, 12, 200)

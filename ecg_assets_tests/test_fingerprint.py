import os

from ecg_assets.core.fingerprint import folder_fingerprint


def _dataset(folder):
    (folder / "sub").mkdir(parents=True)
    (folder / "A0001.mat").write_bytes(b"x" * 10)
    (folder / "sub" / "A0002.hea").write_text("header\n")
    return folder


def test_fingerprint_is_stable_and_ignores_hidden_files(tmp_path):
    folder = _dataset(tmp_path / "d")
    first = folder_fingerprint([folder])
    (folder / ".A0001.mat.tmp").write_text("half-written")
    assert folder_fingerprint([folder]) == first


def test_fingerprint_changes_on_added_removed_resized_or_touched_files(tmp_path):
    folder = _dataset(tmp_path / "d")
    seen = {folder_fingerprint([folder])}
    (folder / "sub" / "A0003.hea").write_text("new\n")
    seen.add(folder_fingerprint([folder]))
    (folder / "A0001.mat").write_bytes(b"x" * 11)
    seen.add(folder_fingerprint([folder]))
    stat = (folder / "A0001.mat").stat()
    os.utime(folder / "A0001.mat", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    seen.add(folder_fingerprint([folder]))
    (folder / "sub" / "A0002.hea").unlink()
    seen.add(folder_fingerprint([folder]))
    assert len(seen) == 5


def test_fingerprint_covers_extra_files_and_their_absence(tmp_path):
    folder = _dataset(tmp_path / "d")
    override = tmp_path / "unified_label_mapping.csv"
    absent = folder_fingerprint([folder, override])
    override.write_text("dataset,record_id,mapped_label\n")
    present = folder_fingerprint([folder, override])
    assert absent != present
    assert folder_fingerprint([folder]) not in (absent, present)

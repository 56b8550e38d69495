"""The test suite's own machinery: a whole-pipeline session fixture is built once per run, and again after a
failed build (conftest.built_once, shared by the pytest-xdist workers through a lock)."""

import pytest

from .conftest import built_once


def test_a_shared_fixture_is_built_once_and_rebuilt_from_scratch_after_a_failed_build(tmp_path_factory):
    built = []

    def failing(root):
        (root / "half_written").write_text("")
        raise RuntimeError("the build failed")

    def build(root):
        assert not (root / "half_written").exists()  # a fresh folder, not the failed build's leftovers
        built.append(root)
        return {"builds": len(built), "root": str(root)}

    with pytest.raises(RuntimeError, match="the build failed"):
        built_once(tmp_path_factory, "probe_fixture", failing)
    first = built_once(tmp_path_factory, "probe_fixture", build)
    assert first["builds"] == 1
    assert built_once(tmp_path_factory, "probe_fixture", build) == first  # read back, not built again
    assert len(built) == 1

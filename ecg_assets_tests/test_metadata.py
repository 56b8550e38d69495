"""What the asset pages show: embedded figures, and the description/group/kinds/code version of every asset."""

import base64
import re
import shutil

import dagster as dg
import numpy as np
import pytest

from ecg_assets.core import versioning
from ecg_assets.core.store import RecordStoreWriter
from ecg_assets.defs import assets, metadata
from ecg_assets.defs.resources import EcgPathsResource

from .conftest import register_partitions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _embedded_png(value: dg.MetadataValue) -> bytes:
    match = re.fullmatch(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", value.value)
    assert match, value.value[:80]
    png = base64.b64decode(match.group(1))
    assert png.startswith(PNG_MAGIC)
    return png


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    with RecordStoreWriter(tmp_path / "processed", (12, 500)) as writer:
        for position, label in enumerate(["AF", "AF", "NORM", "MI", "OTHER"]):
            writer.append(
                rng.normal(size=(12, 500)).astype(np.float32),
                {
                    "record_id": f"r{position}",
                    "label": label,
                    "lead_mask": "1" + "0" * 11 if label == "AF" else "1" * 12,
                    "original_fs": 300.0 if position % 2 else 500.0,
                    "original_samples": 3000 + 100 * position,
                },
            )
        return writer.commit()


def test_example_waveforms_show_one_record_per_label_as_an_embedded_png(store, tmp_path):
    figure = tmp_path / "figures" / "example_waveforms.png"
    value = metadata.example_waveforms(store, fs=50.0, path=figure, examples=3)
    assert _embedded_png(value) == figure.read_bytes()


def test_example_waveforms_of_an_empty_store_say_so(tmp_path):
    with RecordStoreWriter(tmp_path, (12, 500)) as writer:
        empty = writer.commit()
    assert "no processed records" in metadata.example_waveforms(empty, 500.0, tmp_path / "x.png").value
    assert not (tmp_path / "x.png").exists()


def test_recording_distributions_and_training_history_are_embedded(store, tmp_path):
    _embedded_png(metadata.recording_distributions(store, tmp_path / "distributions.png"))
    history = [
        {"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": 1.2 / epoch, "val_macro_f1": 0.2 * epoch}
        for epoch in (1, 2, 3)
    ]
    _embedded_png(metadata.training_history(history, tmp_path / "history.png"))
    assert (tmp_path / "distributions.png").is_file() and (tmp_path / "history.png").is_file()


def test_every_asset_has_description_group_kinds_and_a_source_code_version():
    versions = {}
    for asset in assets.ecg_assets:
        spec = asset.specs_by_key[asset.key]
        assert spec.description and len(spec.description) > 40, asset.key
        assert spec.group_name == "ecg_pipeline" and spec.kinds, asset.key
        assert re.fullmatch(r"[0-9a-f]{16}", spec.code_version), asset.key
        versions[asset.key.to_user_string()] = spec.code_version
    assert len(set(versions.values())) == len(versions)
    assert versions["splits"] == versioning.code_version(versioning.SPLITS_CODE)
    assert versions["processed_records"] == versioning.code_version(versioning.PROCESSING_CODE)


def test_the_code_version_covers_every_core_module_a_step_imports():
    """The module set is computed from the imports, so no reader can be left out of the reuse key."""
    closure = set(versioning.module_closure(versioning.PROCESSING_CODE))
    for module in ("matfiles", "readers", "paths", "signal", "store", "datasets.base", "datasets.config"):
        assert f"ecg_assets.core.{module}" in closure, module
    assert {f"ecg_assets.core.datasets.{name}" for name in ("cinc2017", "cinc2021", "mat", "ptbxl")} <= closure
    assert "ecg_assets.core.training" not in closure  # only what preprocessing really depends on
    training = set(versioning.module_closure(versioning.TRAINING_CODE))
    assert {"ecg_assets.core.model", "ecg_assets.core.data", "ecg_assets.core.ddp"} <= training


def test_code_version_follows_the_source_of_every_module_in_the_closure(tmp_path, monkeypatch):
    before = versioning.code_version(versioning.SPLITS_CODE)
    assert versioning.code_version(versioning.SPLITS_CODE) == before  # deterministic
    core = tmp_path / "core"
    shutil.copytree(versioning.CORE_DIR, core)
    with (core / "atomic_io.py").open("a") as handle:  # imported by splits.py, not named anywhere
        handle.write("\n# edited\n")
    monkeypatch.setattr(versioning, "CORE_DIR", core)
    versioning.code_version.cache_clear()
    versioning.module_closure.cache_clear()
    try:
        assert versioning.code_version(versioning.SPLITS_CODE) != before
    finally:
        versioning.code_version.cache_clear()
        versioning.module_closure.cache_clear()


def test_a_code_change_marks_the_asset_stale_and_after_it_reruns_its_downstream(tmp_path):
    # Dagster's stale-status resolver (what the UI's "stale" badges use); internal API of the pinned 1.13.27.
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._core.loader import LoadingContextForTest

    label_mapping, processed_records, splits = assets.ecg_assets[:3]
    edited = processed_records.map_asset_specs(lambda spec: spec.replace_attributes(code_version="edited"))
    resources = {"paths": EcgPathsResource(artifacts_dir=str(tmp_path))}
    run_config = {"ops": {"processed_records": {"config": {"smoke_test": True}}}}

    def status(instance, chain):
        graph = dg.Definitions(assets=chain, resources=resources).resolve_asset_graph()
        resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
        return {
            key: [cause.reason for cause in resolver.get_stale_causes(dg.AssetKey(key), "demo_cinc2017")]
            for key in ("processed_records", "splits")
        }

    with dg.instance_for_test() as instance:
        register_partitions(instance, "demo_cinc2017")
        kwargs = {"partition_key": "demo_cinc2017", "resources": resources, "run_config": run_config}
        assert dg.materialize([label_mapping, processed_records, splits], instance=instance, **kwargs).success
        assert status(instance, [label_mapping, processed_records, splits]) == {"processed_records": [], "splits": []}
        assert status(instance, [label_mapping, edited, splits]) == {
            "processed_records": ["has a new code version"],
            "splits": [],
        }
        assert dg.materialize([label_mapping, edited, splits], selection=[edited], instance=instance, **kwargs).success
        assert status(instance, [label_mapping, edited, splits]) == {
            "processed_records": [],
            "splits": ["has a new dependency data version"],
        }


# --- what a user reads on the asset pages --------------------------------------------------------


def test_empty_tables_say_none_in_words_and_sizes_are_human():
    import pandas as pd

    assert metadata.markdown_table(pd.DataFrame(columns=["record_id", "reason"])).value == "none"
    assert metadata.reasons_table([]).value == "none"
    assert metadata.counts_table({}, "warning").value == "none"
    assert metadata.counts_table({"a": 2}, "warning").value.startswith("| warning | records |")
    assert [metadata.human_size(n) for n in (0, 999, 1500, 41_300_000, 3 * 10**12)] == [
        "0 B",
        "999 B",
        "1.5 kB",
        "41.3 MB",
        "3.0 TB",
    ]


@pytest.fixture
def figures(monkeypatch):
    """Every figure the plots module saves, kept open for inspection."""
    from ecg_assets.core import plots

    saved = []
    original = plots._save

    def keep(figure, path, dpi=110):
        saved.append(figure)
        texts = [figure._suptitle.get_text() if figure._suptitle else ""] + [a.get_title() for a in figure.axes]
        figure.ecg_titles = " ".join(texts)
        figure.ecg_row_labels = {axis.get_ylabel() for axis in figure.axes if axis.get_ylabel()}
        return original(figure, path, dpi)

    monkeypatch.setattr(plots, "_save", keep)
    return saved


def test_a_single_lead_grid_shows_the_lead_present_and_names_the_absent_ones_once(tmp_path, figures):
    rng = np.random.default_rng(1)
    with RecordStoreWriter(tmp_path / "processed", (12, 500)) as writer:
        for position, label in enumerate(["AF", "NORM"]):
            writer.append(
                rng.normal(size=(12, 500)).astype(np.float32),
                {"record_id": f"r{position}", "label": label, "lead_mask": "1" + "0" * 11},
            )
        single_lead = writer.commit()
    metadata.example_waveforms(single_lead, 50.0, tmp_path / "waves.png", dataset="ward_a")
    (figure,) = figures
    assert len(figure.axes) == 2  # one row (lead I) x two records, not twelve rows of "missing"
    assert figure.ecg_row_labels == {"I"}
    assert "ward_a" in figure.ecg_titles
    assert "not recorded in these examples: II, III, aVR, aVL, aVF, V1, V2, V3, V4, V5, V6" in figure.ecg_titles


def test_every_figure_title_names_its_dataset(store, tmp_path, figures):
    from ecg_assets.core import plots

    history = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "val_macro_f1": 0.4}]
    metadata.example_waveforms(store, 50.0, tmp_path / "a.png", dataset="ward_a")
    metadata.recording_distributions(store, tmp_path / "b.png", dataset="ward_a")
    metadata.training_history(history, tmp_path / "c.png", dataset="ward_a")
    plots.plot_f1_scores({"AF": {"f1": 0.5, "support": 3}}, dataset="ward_a")
    plots.plot_confusion_matrix([[1, 0], [0, 1]], ["AF", "NORM"], dataset="ward_a")
    assert len(figures) == 5 and all("ward_a" in figure.ecg_titles for figure in figures)


@pytest.mark.slow
def test_demo_metadata_says_synthetic_everywhere_and_test_metrics_plots_the_whole_training_log(tmp_path, figures):
    """The numbers people quote (splits, model, metrics) say SYNTHETIC; the history figure is the full log."""
    import json

    from ecg_assets.core import plots
    from ecg_assets.defs.checks import ecg_checks

    from .conftest import cpu_resources, tiny_training

    partition = "demo_cinc2017"
    run_config = {
        "ops": {
            "processed_records": {"config": {"smoke_test": True}},
            "trained_model": {"config": tiny_training(epochs=2, batch_size=4)},
        }
    }
    with dg.instance_for_test() as instance:
        register_partitions(instance, partition)
        kwargs = {"partition_key": partition, "resources": cpu_resources(tmp_path), "instance": instance}
        result = dg.materialize([*assets.ecg_assets, *ecg_checks], run_config=run_config, **kwargs)
        assert result.success
        for event in result.get_asset_materialization_events():
            note = event.materialization.metadata["dataset"].value
            assert note.startswith("SYNTHETIC demo data"), (event.asset_key, note)
        per_class = result.asset_materializations_for_node("test_metrics")[0].metadata["per_class"].value
        header, _, *rows = per_class.splitlines()
        column = [cell.strip() for cell in header.split("|")].index("support")
        supports = [row.split("|")[column].strip() for row in rows]
        assert supports and all(support.isdigit() for support in supports), per_class  # counts, not 3.0

        # Training went on after the best epoch: the log has an epoch the best checkpoint's history lacks.
        log_path = tmp_path / partition / "training_log.json"
        log = json.loads(log_path.read_text())
        log["epochs"].append({**log["epochs"][-1], "epoch": len(log["epochs"]) + 1, "val_macro_f1": 0.01})
        log_path.write_text(json.dumps(log))
        figures.clear()
        rerun = dg.materialize(assets.ecg_assets, selection=[assets.test_metrics], **kwargs)
        assert rerun.success
    (history,) = [figure for figure in figures if "training history" in figure.ecg_titles]
    assert f"{partition}: training history, 3 epoch(s)" in history.ecg_titles
    expected = plots.plot_training_history(log["epochs"], dataset=partition)
    assert (tmp_path / partition / "figures" / "training_history.png").read_bytes() == expected
    embedded = rerun.asset_materializations_for_node("test_metrics")[0].metadata["training_history"]
    assert _embedded_png(embedded) == expected


def test_an_asset_built_from_several_partitions_says_synthetic_when_any_of_them_is_the_demo(tmp_path):
    """pooled_model and generalisation_matrix pool partitions: SYNTHETIC leads their `data` note when one is
    the generated demo (or a copy of it, which keeps its marker file); their numbers are quoted too."""
    from ecg_assets.core.demo import MARKER_FILE
    from ecg_assets.defs.assets import datasets_note
    from ecg_assets.defs.resources import EcgPathsResource

    data = tmp_path / "data"
    (data / "ward").mkdir(parents=True)
    (data / "copied_demo").mkdir()
    (data / "copied_demo" / MARKER_FILE).write_text("generated")
    paths = EcgPathsResource(data_dir=str(data), artifacts_dir=str(tmp_path / "artifacts"))
    assert datasets_note(paths, ["ward"]) == "recordings of ward"
    mixed = datasets_note(paths, ["ward", "copied_demo"])
    assert mixed == "SYNTHETIC demo data (generated, not patient recordings): copied_demo; recordings of ward"
    demo = EcgPathsResource(artifacts_dir=str(tmp_path / "artifacts"))  # no data folder: the embedded demo
    assert datasets_note(demo, ["demo_cinc2021", "demo_cinc2017"]) == (
        "SYNTHETIC demo data (generated, not patient recordings): demo_cinc2017, demo_cinc2021"
    )

"""One model across datasets: the pooled store view, class masking, mixing, lead dropout and the matrix."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from ecg_assets.core.checkpoints import save_checkpoint
from ecg_assets.core.data import drop_leads
from ecg_assets.core.duplicates import DuplicatePair, DuplicateReport, RecordRef
from ecg_assets.core.generalisation import HeldOutSplit, ModelSource, build_matrix, lead_set_scores
from ecg_assets.core.labels import LABEL_TO_INDEX, LABELS
from ecg_assets.core.model import ECGResNet1D
from ecg_assets.core.pooled import PooledStore, PooledStoreSpec, mixing_shares
from ecg_assets.core.scoring import load_scoring_model, score_positions
from ecg_assets.core.store import RecordStoreWriter
from ecg_assets.core.training import DeviceSettings, TrainingConfig, _Trainer

from .conftest import cpu_resources, register_partitions, tiny_training, write_wfdb_record

CPU = DeviceSettings(device=torch.device("cpu"))
TINY = dict(epochs=1, batch_size=8, base_channels=4, stem_stride=4, ensemble_members=1, log_every_batches=1)


def _store(folder, labels, leads, length=1000, windows=0, seed=0):
    """A small store: records of `labels` holding leads `leads`, some with a longer window."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(12, dtype=bool)
    mask[list(leads)] = True
    writer = RecordStoreWriter(folder, (12, length))
    for number, label in enumerate(labels):
        rows = rng.normal(size=(len(leads), length)).astype(np.float16)
        window = rng.normal(size=(len(leads), 3 * length)).astype(np.float16) if number < windows else None
        row = {
            "record_id": f"{folder.name}{number}",
            "label": label,
            "label_index": LABEL_TO_INDEX[label],
            "lead_mask": "".join("1" if present else "0" for present in mask),
        }
        writer.append(rows, row, window, lead_mask=mask)
    return writer.commit(metadata={"preprocess": {"target_fs": 500.0}, "content_fingerprint": folder.name})


@pytest.fixture
def two_stores(tmp_path):
    """A single-lead dataset that says AF/NORM/OTHER and a 12-lead one that uses every class."""
    single = _store(tmp_path / "single", ["AF", "NORM", "OTHER"] * 6, [0], windows=4)
    twelve = _store(tmp_path / "twelve", list(LABELS) * 4, range(12), seed=1)
    return {"single": single, "twelve": twelve}


def test_pooled_store_reads_each_member_in_place(two_stores):
    pooled = PooledStore(two_stores)
    single, twelve = two_stores["single"], two_stores["twelve"]
    assert len(pooled) == len(single) + len(twelve)
    assert pooled.positions("twelve", [0, 3]) == [len(single), len(single) + 3]
    mixed = [2, len(single) + 5, 0, len(single)]
    expected = np.stack([single.signal(2), twelve.signal(5), single.signal(0), twelve.signal(0)])
    assert np.array_equal(pooled.signals(mixed), expected)
    assert np.array_equal(pooled.window_crops([1, 3], [100, 0], 500), single.window_crops([1, 3], [100, 0], 500))
    assert pooled.window_samples.tolist() == [*single.window_samples, *twelve.window_samples]
    assert pooled.lead_masks[: len(single)].sum(axis=1).tolist() == [1] * len(single)
    assert pooled.index["dataset"].tolist() == ["single"] * len(single) + ["twelve"] * len(twelve)
    rebuilt = PooledStore.from_spec(PooledStoreSpec.model_validate_json(pooled.spec().model_dump_json()))
    assert rebuilt.metadata["content_fingerprint"] == pooled.metadata["content_fingerprint"]
    reordered = PooledStore({"twelve": twelve, "single": single})
    assert reordered.metadata["content_fingerprint"] != pooled.metadata["content_fingerprint"]


def test_mixing_gives_each_dataset_its_share_of_the_draws(two_stores):
    train = {"single": 18, "twelve": 20}
    assert mixing_shares(train, "proportional", 1000) is None
    assert mixing_shares(train, "capped", 10) == {"single": 10.0, "twelve": 10.0}
    pooled = PooledStore(two_stores, dataset_shares=mixing_shares(train, "equal", 1000))
    positions = np.arange(len(pooled))
    weights = pooled.mixing_weights(positions)
    single = positions < len(two_stores["single"])
    assert weights[single].sum() == pytest.approx(weights[~single].sum())  # equal shares, any sizes


def test_a_class_a_dataset_never_labels_is_never_counted_as_its_error(two_stores):
    """A network that puts all its mass on BBB: for CinC-2017-like records (which cannot say BBB) the
    masked loss ignores it; unmasked, it is the largest error of the batch."""
    vocabularies = {"single": ["AF", "NORM", "OTHER"], "twelve": list(LABELS)}
    single = list(range(len(two_stores["single"])))
    losses = {}
    for masked in (True, False):
        pooled = PooledStore(two_stores, vocabularies if masked else None)
        splits = {"train": list(range(len(pooled))), "val": [0, 1], "test": []}  # BBB is a training class
        trainer = _Trainer(pooled, splits, TrainingConfig(**TINY, rhythm_features=False), CPU)  # signals alone
        with torch.no_grad():
            trainer.model.head[-1].bias.fill_(0.0)
            trainer.model.head[-1].bias[LABEL_TO_INDEX["BBB"]] = 30.0
        targets = torch.from_numpy(trainer.train_batches.labels[single])
        losses[masked] = trainer.train_step(torch.from_numpy(pooled.signals(single)), targets, step=1, last=True)
    assert losses[False] > 20  # BBB counted against every AF/NORM/OTHER record
    assert losses[True] < 5  # ... and not at all with the dataset's vocabulary


def test_lead_dropout_keeps_at_least_one_present_lead_and_never_invents_one():
    generator = torch.Generator().manual_seed(0)
    signals = torch.randn(400, 12, 50)
    signals[:200, 1:] = 0.0  # single-lead records
    signals[200:, 3] = 0.0  # a lead these records lack
    present = signals.ne(0).any(dim=-1)
    dropped = drop_leads(signals.clone(), 1.0, generator)
    kept = dropped.ne(0).any(dim=-1)
    assert (kept.sum(dim=1) >= 1).all() and not (kept & ~present).any()
    assert torch.equal(dropped[:200], signals[:200])  # nothing to drop from a single lead
    counts = kept[200:].sum(dim=1)
    assert (counts < 11).all() and (counts == 1).sum() > 40  # every record dropped; single leads are common
    untouched = drop_leads(signals.clone(), 0.0, generator)
    assert torch.equal(untouched, signals)


def _checkpoint(path, classes, seed=0):
    """An untrained tiny model saved as a pipeline checkpoint knowing `classes`."""
    torch.manual_seed(seed)
    config = TrainingConfig(**TINY)
    model = ECGResNet1D(config.architecture())
    save_checkpoint(
        path,
        {
            "epoch": 1,
            "model_state": model.state_dict(),
            "model_config": config.architecture().model_dump(),
            "training_config": config.model_dump(),
            "preprocess": {},
            "classes": list(LABELS),
            "class_mask": [label in classes for label in LABELS],
            "history": [],
        },
    )
    return path


def test_matrix_scores_every_model_on_every_test_split_with_gaps_and_leaks(two_stores, tmp_path):
    single, twelve = two_stores["single"], two_stores["twelve"]
    leaked = RecordRef("twelve", 2, twelve.index["record_id"][2])
    twin = RecordRef("single", 0, single.index["record_id"][0])
    report = DuplicateReport([DuplicatePair(twin, leaked, 1.0, 1)], 2, 1, 0, 0.0)
    models = [
        ModelSource("single", _checkpoint(tmp_path / "s.pth", ["AF", "NORM", "OTHER"]), trained_on=frozenset({twin})),
        ModelSource("twelve", None, gap="trained_model not materialized in this Dagster instance"),
        ModelSource("pooled", _checkpoint(tmp_path / "pooled.pth", list(LABELS), seed=1)),
    ]
    only_other = _store(tmp_path / "only_other", ["OTHER"] * 4, [0, 1])  # e.g. unlabelled WFDB records
    test_sets = [
        HeldOutSplit("single", single, list(range(6))),
        HeldOutSplit("twelve", twelve, list(range(10))),
        HeldOutSplit("x", None, gap="no splits.json on disk"),
        HeldOutSplit("only_other", only_other, [0, 1, 2, 3]),
    ]
    matrix = build_matrix(models, test_sets, report, CPU)
    assert len(matrix.cells) == 12
    gaps = {(cell.model, cell.test_set): cell.gap for cell in matrix.cells if cell.status == "gap"}
    missing = {("twelve", "single"), ("twelve", "twelve"), ("twelve", "x"), ("twelve", "only_other")}
    assert set(gaps) == missing | {("single", "x"), ("pooled", "x"), ("single", "only_other"), ("pooled", "only_other")}
    # one class to choose from: every prediction would be right, so the cell is a gap, not a 1.0
    assert gaps["pooled", "only_other"].startswith("nothing to measure")
    cell = matrix.cell("single", "twelve")
    assert cell.records == 10 and cell.classes == ["AF", "NORM", "OTHER"]  # classes known to both
    assert cell.leaked_records == 1 and cell.leaked_record_ids == [leaked.record_id]
    assert cell.ci_low <= cell.macro_f1 <= cell.ci_high
    pooled_on_single = matrix.cell("pooled", "single")
    assert set(pooled_on_single.per_class) <= {"AF", "NORM", "OTHER"} and pooled_on_single.leaked_records == 0
    table = matrix.table()
    assert len(table) == 12 and {"f1_MI", "ci_low", "leaked_records"} <= set(table.columns)


def test_lead_sets_score_twelve_lead_records_on_fewer_leads(two_stores, tmp_path):
    scoring = load_scoring_model(_checkpoint(tmp_path / "m.pth", list(LABELS)), torch.device("cpu"))
    table = lead_set_scores(scoring, [HeldOutSplit("twelve", two_stores["twelve"], list(range(20)))], CPU)
    assert table["lead_set"].tolist() == [
        "as recorded", "all 12 leads", "limb leads", "I + II", "lead I only", "lead II only"
    ]
    assert (table["records"] == 20).all()
    scores = dict(zip(table["lead_set"], table["macro_f1"]))
    assert scores["as recorded"] == scores["all 12 leads"]
    # scoring on lead I only is scoring the records with every other lead zeroed
    store = two_stores["twelve"]
    lead_one = score_positions(scoring, store, range(20), CPU, leads=[0])[0]
    every_lead = score_positions(scoring, store, range(20), CPU)[0]
    copy_dir = tmp_path / "lead_i"
    writer = RecordStoreWriter(copy_dir, store.row_shape)
    for position in range(20):
        signal = store.signal(position)
        signal[1:] = 0.0
        writer.append(signal, store.index.iloc[position].to_dict())
    zeroed = score_positions(scoring, writer.commit(metadata=store.metadata), range(20), CPU)[0]
    assert np.allclose(lead_one, zeroed) and not np.allclose(lead_one, every_lead)


# --- the assets, end to end on the embedded demo ------------------------------------------------------


def test_pooled_model_and_matrix_depend_on_every_dataset_partition():
    import dagster as dg

    from ecg_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    edges = {
        ("pooled_model", "splits"),
        ("generalisation_matrix", "splits"),
        ("generalisation_matrix", "trained_model"),
    }
    for child, parent in edges:
        assert not graph.get(dg.AssetKey(child)).is_partitioned
        mapping = graph.get_partition_mapping(dg.AssetKey(child), dg.AssetKey(parent))
        assert isinstance(mapping, dg.AllPartitionMapping), (child, parent, mapping)
    assert defs.resolve_job_def("pooled_and_matrix").asset_layer.executable_asset_keys == {
        dg.AssetKey("pooled_model"),
        dg.AssetKey("generalisation_matrix"),
    }


DEMO = ("demo_cinc2017", "demo_cinc2021")
PLANTED = 3  # demo_cinc2017 test records copied into demo_cinc2021
TINY_RUN = tiny_training()
CINC2017_DX = {"N": "426783006", "A": "164889003", "O": "427084000"}


def _plant_copies(data_dir, artifacts_dir, instance):
    """demo_cinc2017's chain first; then copies of some of its test records, repackaged as CinC 2021
    records (WFDB .dat, gain 200 instead of MAT v4 gain 1000), join demo_cinc2021's folder."""
    import scipy.io

    _chain(DEMO[0], data_dir, artifacts_dir, instance)
    cinc2017 = data_dir / DEMO[0]
    test_ids = json.loads((artifacts_dir / DEMO[0] / "processed" / "splits.json").read_text())["record_ids"]["test"]
    codes = dict(line.split(",") for line in (cinc2017 / "REFERENCE.csv").read_text().split())
    planted = {}
    for number, record_id in enumerate(record for record in test_ids if codes[record] in CINC2017_DX):
        if number == PLANTED:
            break
        signal_mv = scipy.io.loadmat(cinc2017 / f"{record_id}.mat")["val"] / 1000.0
        name = f"P{number:04d}"
        comments = [f"Dx: {CINC2017_DX[codes[record_id]]}"]
        write_wfdb_record(data_dir / DEMO[1], name, signal_mv, 300, ["I"], comments=comments)
        planted[name] = record_id
    return planted


def _resources(data_dir, artifacts_dir):
    """The CPU resources, reading datasets from `data_dir`."""
    from ecg_assets.defs.resources import EcgPathsResource

    paths = EcgPathsResource(data_dir=str(data_dir), artifacts_dir=str(artifacts_dir))
    return {**cpu_resources(artifacts_dir), "paths": paths}


def _chain(partition, data_dir, artifacts_dir, instance):
    import dagster as dg

    from ecg_assets.defs.assets import ecg_assets
    from ecg_assets.defs.checks import ecg_checks

    result = dg.materialize(
        [*ecg_assets, *ecg_checks],
        partition_key=partition,
        resources=_resources(data_dir, artifacts_dir),
        run_config={"ops": {"trained_model": {"config": TINY_RUN}}},
        instance=instance,
    )
    assert result.success
    return result


@pytest.mark.slow
def test_pooled_model_and_matrix_on_the_demo_keep_a_planted_twin_out_of_training_and_flag_it(demo_root, tmp_path):
    import dagster as dg
    import pandas as pd

    from ecg_assets.defs.assets import ecg_assets
    from ecg_assets.defs.pooled import pooled_assets, pooled_checks

    data_dir, artifacts_dir = tmp_path / "data", tmp_path / "artifacts"
    for name in DEMO:
        shutil.copytree(demo_root / name, data_dir / name)
    instance = register_partitions(dg.DagsterInstance.ephemeral(), *DEMO)
    planted = _plant_copies(data_dir, artifacts_dir, instance)
    assert len(planted) == PLANTED
    _chain(DEMO[1], data_dir, artifacts_dir, instance)

    result = dg.materialize(
        [*pooled_assets, *pooled_checks, *ecg_assets],
        selection=[asset.key for asset in pooled_assets],
        resources=_resources(data_dir, artifacts_dir),
        run_config={"ops": {"pooled_model": {"config": TINY_RUN}}},
        instance=instance,
    )
    assert result.success
    checks = {evaluation.check_name: evaluation.passed for evaluation in result.get_asset_check_evaluations()}
    assert checks == {"pooled_training_has_no_test_twins": True, "matrix_diagonal_matches_test_metrics": True}

    # Where the copies landed in demo_cinc2021's splits, and what the pooled model did with them.
    splits = json.loads((artifacts_dir / DEMO[1] / "processed" / "splits.json").read_text())["record_ids"]
    learnt_from = {name for name in planted if name in splits["train"] + splits["val"]}
    assert learnt_from, "at least one copy must land in demo_cinc2021's train or val split for this test"
    excluded = pd.read_csv(artifacts_dir / "pooled" / "excluded_records.csv", dtype=str)
    assert set(excluded["record_id"]) == learnt_from
    assert all(f"{DEMO[0]}/{planted[name]}" == twin for name, twin in zip(excluded["record_id"], excluded["twin"]))
    plan = json.loads((artifacts_dir / "pooled" / "plan.json").read_text())
    pooled_training = set(plan["records"][DEMO[1]]["train"] + plan["records"][DEMO[1]]["val"])
    assert not learnt_from & pooled_training
    metadata = result.asset_materializations_for_node("pooled_model")[0].metadata
    synthetic = "SYNTHETIC demo data (generated, not patient recordings): demo_cinc2017, demo_cinc2021"
    assert metadata["data"].value == synthetic  # every pooled dataset is the demo, and the numbers say so
    assert metadata["excluded_as_leakage"].value == len(learnt_from)
    assert metadata["duplicate_pairs_across_datasets"].value == PLANTED
    assert "lead I only" in metadata["test_f1_by_lead_set"].value

    # The 3 x 2 matrix: demo_cinc2021's own model learnt from the copies, so its cell on demo_cinc2017 is flagged.
    matrix = json.loads((artifacts_dir / "generalisation" / "matrix.json").read_text())
    assert matrix["models"] == [*DEMO, "pooled"] and matrix["test_sets"] == list(DEMO)
    cells = {(cell["model"], cell["test_set"]): cell for cell in matrix["cells"]}
    assert len(cells) == 6 and all(cell["status"] == "scored" for cell in cells.values())
    flagged = cells[DEMO[1], DEMO[0]]
    assert flagged["leaked_records"] == len(learnt_from)
    assert set(flagged["leaked_record_ids"]) == {planted[name] for name in learnt_from}
    assert all(cells[key]["leaked_records"] == 0 for key in cells if key != (DEMO[1], DEMO[0]))
    for dataset in DEMO:
        test_metrics = json.loads((artifacts_dir / dataset / "test_metrics.json").read_text())
        assert cells[dataset, dataset]["macro_f1"] == test_metrics["macro_f1"]
    assert (artifacts_dir / "generalisation" / "matrix.csv").is_file()
    matrix_metadata = result.asset_materializations_for_node("generalisation_matrix")[0].metadata
    assert "data:image/png;base64,iVBORw0KGgo" in matrix_metadata["heatmap"].value
    assert matrix_metadata["data"].value == synthetic

    # python -m ecg_assets.predict with the pooled checkpoint: a 12-lead folder and a single-lead folder.
    from ecg_assets.predict import main as predict_main

    folders = {"twelve_leads": data_dir / DEMO[1], "lead_i": data_dir / DEMO[0]}
    for name, source in folders.items():
        target = tmp_path / name
        target.mkdir()
        for path in sorted(path for path in source.iterdir() if path.name.startswith(("Q", "A")))[:8]:
            shutil.copy(path, target / path.name)
        if name == "lead_i":
            references = (source / "REFERENCE.csv").read_text().splitlines()
            (target / "REFERENCE.csv").write_text("\n".join(references[:8]) + "\n")
        output = tmp_path / f"{name}.csv"
        model = artifacts_dir / "pooled" / "models" / "best.pth"
        assert predict_main(["--model", str(model), "--input", str(target), "--output", str(output)]) == 0
        predictions = pd.read_csv(output, keep_default_na=False)
        scored = predictions[predictions["error"] == ""]
        assert len(scored) >= 3 and set(scored["predicted_label"]) <= set(LABELS)
        assert {f"p_{label}" for label in LABELS} <= set(predictions.columns)


def test_a_torchrun_job_carries_the_pooled_store(two_stores, tmp_path):
    from ecg_assets.cli.train_worker import TorchrunJob, open_store

    pooled = PooledStore(two_stores, {"single": ["AF", "NORM", "OTHER"], "twelve": list(LABELS)}, {"single": 1.0})
    job = TorchrunJob(
        partition="pooled",
        pooled=pooled.spec(),
        splits=tmp_path / "splits.json",
        models_dir=tmp_path / "models",
        training_log=tmp_path / "log.json",
        pipeline_log=tmp_path / "pipeline.log",
        config=TrainingConfig(**TINY),
        device=CPU.to_json(),
    )
    reopened = open_store(TorchrunJob.model_validate(job.model_dump(mode="json")))  # as the Pipes extras carry it
    assert isinstance(reopened, PooledStore) and len(reopened) == len(pooled)
    assert reopened.metadata["content_fingerprint"] == pooled.metadata["content_fingerprint"]
    assert np.array_equal(reopened.record_class_masks, pooled.record_class_masks)


def test_ecg_assets_materialize_runs_each_chain_then_the_across_dataset_assets_once(monkeypatch, tmp_path):
    from ecg_assets.cli import main as cli

    calls = []
    monkeypatch.setattr(cli, "run_dagster", lambda command, env, verbose=False: calls.append(command) or 0)
    monkeypatch.setattr(cli.summary, "summarize", lambda settings, partitions: "")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ECG_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.delenv("ECG_DATA_DIR", raising=False)  # the demo's two partitions

    def runs():
        found = [(command[command.index("--job") + 1], "--partition" in command, command) for command in calls]
        calls.clear()
        return found

    training = {"ops": {"trained_model": {"config": {"epochs": 3}}}}
    assert cli.main(["materialize", "--config-json", json.dumps(training)]) == 0
    (first, second, across) = runs()
    assert first[:2] == second[:2] == ("ecg_pipeline", True) and across[:2] == ("pooled_and_matrix", False)
    config = json.loads(across[2][across[2].index("--config-json") + 1])
    assert config == {"ops": {"pooled_model": {"config": {"epochs": 3}}}}  # the partitions' training config
    assert cli.main(["materialize", "-p", "demo_cinc2017"]) == 0  # one partition: its chain only
    assert [job for job, _, _ in runs()] == ["ecg_pipeline"]


def test_the_diagonal_check_compares_each_diagonal_cell_with_test_metrics(tmp_path):
    import dagster as dg

    from ecg_assets.defs.pooled import STALE_TEST_METRICS, diagonal_check_result

    def cell(model, test_set, f1, sha="s1"):
        return {"model": model, "test_set": test_set, "status": "scored", "macro_f1": f1, "checkpoint_sha256": sha}

    matrix = {"cells": [cell("a", "a", 0.8), cell("a", "b", 0.5), cell("b", "b", 0.7, "s2"), cell("pooled", "a", 0.6)]}
    (tmp_path / "generalisation").mkdir()
    (tmp_path / "generalisation" / "matrix.json").write_text(json.dumps(matrix))

    def result(metrics):
        for dataset, (f1, sha) in metrics.items():
            (tmp_path / dataset).mkdir(exist_ok=True)
            metrics_file = tmp_path / dataset / "test_metrics.json"
            metrics_file.write_text(json.dumps({"macro_f1": f1, "checkpoint_sha256": sha}))
        return diagonal_check_result(tmp_path)

    nothing = diagonal_check_result(tmp_path)
    assert not nothing.passed and nothing.severity == dg.AssetCheckSeverity.WARN  # nothing to compare
    assert result({"a": (0.8, "s1"), "b": (0.7, "s2")}).passed
    differs = result({"a": (0.8, "s1"), "b": (0.71, "s2")})
    assert not differs.passed and differs.severity == dg.AssetCheckSeverity.ERROR
    assert differs.metadata["mismatched"].value == 1
    stale = result({"a": (0.8, "s0"), "b": (0.7, "s2")})
    assert not stale.passed and STALE_TEST_METRICS in stale.metadata["diagonal"].value


def test_the_pooled_store_trains_a_cross_validated_ensemble_like_one_partition(two_stores, tmp_path):
    from ecg_assets.core.ensemble import fit_model

    pooled = PooledStore(two_stores, {"single": ["AF", "NORM", "OTHER"], "twelve": list(LABELS)})
    train = [position for position in range(len(pooled)) if position % 7]
    splits = {"train": train, "val": [], "test": []}
    config = TrainingConfig(**{**TINY, "ensemble_members": 2, "lead_dropout": 0.5})
    fit = fit_model(pooled, splits, config, CPU, tmp_path / "models", tmp_path / "log.json")
    scoring = load_scoring_model(fit.best_checkpoint)
    assert scoring.members == 2 and scoring.trained_classes == list(range(len(LABELS)))
    table = lead_set_scores(scoring, [HeldOutSplit("twelve", two_stores["twelve"], list(range(0, 20, 5)))], CPU)
    assert table["lead_set"].tolist()[:2] == ["as recorded", "all 12 leads"]

"""The Dagster UI as a user sees it: a demo partition materialized by the quick start's
`ecg-assets materialize`, served by `ecg-assets ui` (`dagster dev -w workspace.yaml` on 127.0.0.1)
with a temporary DAGSTER_HOME, rendered by headless Chromium (the Debian package) through
Playwright; plus GraphQL queries proving the schedule, the sensors, the jobs, the checks, the
code location name and the dataset partitions (which persist, and grow while the UI runs).

The server runs with ECG_DATA_DIR pointing at an empty folder: the demo partitions registered
by the quick start stay, and the last test adds a dataset folder while the server runs.

Chromium missing: skipped with the reason on a developer machine, a failure under CI (`.ci/run`
installs it).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .conftest import DAGSTER, ECG_ASSETS, PROJECT_ROOT, QUICK_START_PARTITION, run_cli, tiny_training
from .test_cli import LOCATION

PARTITION = QUICK_START_PARTITION
CHAIN = ["label_mapping", "processed_records", "splits", "trained_model", "test_metrics"]
ACROSS_DATASETS = ["pooled_model", "generalisation_matrix"]  # unpartitioned, downstream of every partition
ACROSS_RUN_CONFIG = {"ops": {"pooled_model": {"config": tiny_training()}}}
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1920, "height": 1080}  # wide enough for the graph to draw full asset nodes
UI_TIMEOUT_MS = 60_000

pytestmark = pytest.mark.slow


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _chromium_or_skip() -> str:
    """Path of the chromium binary; skip (developer machine) or fail (CI) without it or Playwright."""
    chromium = shutil.which("chromium")
    problems = [] if chromium else ["no `chromium` on PATH (Debian: apt-get install -y chromium)"]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright package is not installed (pip install -e '.[dev]')")
    if problems:
        message = "browser test needs " + "; ".join(problems)
        if _in_ci():
            pytest.fail(f"{message} (CI is set: .ci/run must install it)")
        pytest.skip(message)
    return chromium


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_serving(url: str, server: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"ecg-assets ui exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    pytest.fail(f"ecg-assets ui not serving after {timeout_s} s:\n{log.read_text()[-3000:]}")


def _group_alive(server: subprocess.Popen) -> bool:
    server.poll()  # reap the leader, or its zombie keeps the group "alive"
    try:
        os.killpg(server.pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(server: subprocess.Popen, timeout_s: float = 60) -> None:
    """Stop `dagster dev` and everything it started (webserver, daemon, code servers: our process group)."""
    if _group_alive(server):
        os.killpg(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _group_alive(server) and time.monotonic() < deadline:
        time.sleep(0.5)
    if _group_alive(server):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


@pytest.fixture(scope="module")
def ui(quick_start):
    """`ecg-assets ui` on a free 127.0.0.1 port over the quick start's instance (one materialized demo partition),
    with the pooled model and generalisation matrix materialized after it (the other partition is a labelled gap).
    The last user of `quick_start`: it adds runs, sensor state and a partition to that instance."""
    tmp_path, env = quick_start["root"], dict(quick_start["env"])
    across = [DAGSTER, "asset", "materialize", "--select", ",".join(ACROSS_DATASETS), "-m", "ecg_assets.definitions"]
    run_cli([*across, "--config-json", json.dumps(ACROSS_RUN_CONFIG)], env)  # after the partition's chain
    env["ECG_DATA_DIR"] = str(tmp_path / "data")  # another setting: the demo partitions must stay
    (tmp_path / "data").mkdir()
    port = _free_port()
    log = tmp_path / "ui.log"
    with log.open("w") as log_handle:
        server = subprocess.Popen(
            [ECG_ASSETS, "ui", "--port", str(port)],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, server, log)
        _graphql(url, "mutation { setNuxSeen }")  # no "join the community" dialog over the screenshots
        yield {
            "url": url,
            "env": env,
            "data": tmp_path / "data",
            "artifacts": tmp_path / "artifacts",
            "screenshots": tmp_path / "screenshots",
        }
    finally:
        _stop(server)


def _graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.load(response)
    assert "errors" not in payload, payload["errors"]
    return payload["data"]


def test_graphql_lists_the_schedule_sensor_jobs_and_checks(ui):
    repositories = _graphql(
        ui["url"],
        """{ repositoriesOrError { ... on RepositoryConnection { nodes {
              schedules { name cronSchedule scheduleState { status } }
              sensors { name sensorState { status } targets { pipelineName } }
              jobs { name } } } } }""",
    )["repositoriesOrError"]["nodes"]
    (repository,) = repositories
    (schedule,) = repository["schedules"]
    assert schedule["name"] == "weekly_full_refresh" and schedule["cronSchedule"] == "0 3 * * 0"
    assert schedule["scheduleState"]["status"] == "STOPPED"
    sensors = {sensor["name"]: sensor for sensor in repository["sensors"]}
    assert set(sensors) == {"dataset_files_sensor", "dataset_registration_sensor"}
    assert sensors["dataset_files_sensor"]["sensorState"]["status"] == "STOPPED"
    assert [target["pipelineName"] for target in sensors["dataset_files_sensor"]["targets"]] == ["ecg_pipeline"]
    assert sensors["dataset_registration_sensor"]["sensorState"]["status"] == "RUNNING"  # registers, never runs
    assert not sensors["dataset_registration_sensor"]["targets"]
    assert {"ecg_pipeline", "retrain_and_evaluate", "pooled_and_matrix"} <= {job["name"] for job in repository["jobs"]}

    nodes = _graphql(
        ui["url"],
        """{ assetNodes { assetKey { path } groupName kinds description
              assetChecksOrError { ... on AssetChecks { checks { name blocking
                executionForLatestMaterialization { evaluation { success partition } } } } } } }""",
    )["assetNodes"]
    checks = {
        (node["assetKey"]["path"][0], check["name"]): check["blocking"]
        for node in nodes
        for check in node["assetChecksOrError"]["checks"]
    }
    assert checks == {
        ("processed_records", "processed_records_are_finite"): True,
        ("processed_records", "processed_labels_match_label_mapping"): True,
        ("processed_records", "failed_record_share_is_low"): False,
        ("splits", "splits_are_usable"): True,
        ("splits", "splits_are_disjoint"): True,
        ("test_metrics", "macro_f1_beats_majority_baseline"): False,
        ("pooled_model", "pooled_training_has_no_test_twins"): True,
        ("generalisation_matrix", "matrix_diagonal_matches_test_metrics"): False,
    }
    assert all(node["groupName"] == "ecg_pipeline" and node["kinds"] and node["description"] for node in nodes)
    latest = {
        check["name"]: check["executionForLatestMaterialization"]
        for node in nodes
        for check in node["assetChecksOrError"]["checks"]
    }
    for name, blocking in checks.items():
        if blocking:  # the demo partition passed every blocking check, so training ran
            evaluation = latest[name[1]]["evaluation"]
            partition = None if name[0] in ACROSS_DATASETS else PARTITION
            assert evaluation["success"] and evaluation["partition"] == partition, (name, latest[name[1]])

    limit = _graphql(ui["url"], '{ instance { concurrencyLimit(concurrencyKey: "gpu") { slotCount } } }')
    assert limit["instance"]["concurrencyLimit"]["slotCount"] == 1  # dagster.yaml's pool limit


def _sensor_state(url: str, name: str) -> dict:
    selector = f'{{repositoryLocationName: "{LOCATION}", repositoryName: "__repository__", sensorName: "{name}"}}'
    query = f"{{ sensorOrError(sensorSelector: {selector}) {{ ... on Sensor {{ sensorState {{ id status }} }} }} }}"
    return _graphql(url, query)["sensorOrError"]["sensorState"]


def _pipeline_runs(url: str) -> list[dict]:
    """Runs as the UI's Jobs -> ecg_pipeline -> Runs tab asks for them: by job name and code location."""
    query = f"""{{ runsOrError(filter: {{pipelineName: "ecg_pipeline",
                   tags: [{{key: ".dagster/repository", value: "__repository__@{LOCATION}"}}]}}) {{
                 ... on Runs {{ results {{ runId status tags {{ key value }} }} }} }} }}"""
    return _graphql(url, query)["runsOrError"]["results"]


def test_the_ui_serves_one_code_location_where_the_documented_commands_act(ui):
    locations = _graphql(ui["url"], "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }")
    assert [entry["name"] for entry in locations["workspaceOrError"]["locationEntries"]] == [LOCATION]
    assert _sensor_state(ui["url"], "dataset_files_sensor")["status"] == "STOPPED"
    run_cli([DAGSTER, "sensor", "start", "dataset_files_sensor", "-w", "workspace.yaml"], ui["env"])  # the README's
    state = _sensor_state(ui["url"], "dataset_files_sensor")
    assert state["status"] == "RUNNING"
    _graphql(ui["url"], f'mutation {{ stopSensor(id: "{state["id"]}") {{ __typename }} }}')  # as the UI's toggle
    assert _sensor_state(ui["url"], "dataset_files_sensor")["status"] == "STOPPED"


def test_the_quick_start_run_is_listed_under_the_pipeline_job(ui):
    (run,) = _pipeline_runs(ui["url"])
    assert run["status"] == "SUCCESS"
    assert {"key": "dagster/partition", "value": PARTITION} in run["tags"]


@pytest.fixture(scope="module")
def page(ui):
    chromium = _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport=VIEWPORT, device_scale_factor=2)
        page.set_default_timeout(UI_TIMEOUT_MS)
        yield page
        browser.close()


def _screenshot(page, ui, name: str, clip: dict | None = None) -> None:
    ui["screenshots"].mkdir(exist_ok=True)
    page.screenshot(path=str(ui["screenshots"] / f"{name}.png"), full_page=clip is None, clip=clip)


def _show_markdown_figure(page, key: str):
    """Open a markdown metadata entry (an embedded PNG) and return the rendered image."""
    page.locator("tr", has_text=key).get_by_text("[Show Markdown]").click()
    figure = page.locator("img[src^='data:image/png;base64,']")
    figure.wait_for()
    page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=figure.element_handle())
    return figure


def test_asset_graph_shows_the_five_assets_in_lineage_with_partitions(ui, page):
    page.goto(f"{ui['url']}/asset-groups")
    graph = page.locator("[class*=svgContainer]")  # the lineage canvas (not the sidebar list)
    graph.get_by_text("test_metrics", exact=True).wait_for()
    graph.get_by_text("2 partitions").nth(len(CHAIN) - 1).wait_for()
    page.wait_for_load_state("networkidle")
    _screenshot(page, ui, "asset_graph")

    boxes = {name: graph.get_by_text(name, exact=True).bounding_box() for name in CHAIN}
    assert all(boxes.values()), boxes
    assert sorted(CHAIN, key=lambda name: boxes[name]["x"]) == CHAIN  # drawn left to right as a chain
    # the chain's edges, plus label_mapping -> splits (splits reads label_mapping.csv), plus splits -> pooled_model
    # and splits, trained_model, pooled_model -> generalisation_matrix
    assert graph.locator("path[stroke='var(--color-lineage-edge)']").count() == len(CHAIN) + 4
    assert graph.get_by_text("50% filled").count() == len(CHAIN)  # one of two partitions materialized
    left, right = boxes[CHAIN[0]], boxes[CHAIN[-1]]
    clip = {"x": left["x"] - 40, "y": left["y"] - 20, "width": right["x"] - left["x"] + 240, "height": 150}
    _screenshot(page, ui, "asset_graph_zoomed", clip=clip)


def test_lineage_shows_the_pooled_model_and_the_matrix_downstream_of_every_partition(ui, page):
    nodes = _graphql(
        ui["url"], "{ assetNodes { assetKey { path } isPartitioned dependencies { asset { assetKey { path } } } } }"
    )["assetNodes"]
    upstream = {
        node["assetKey"]["path"][0]: {dependency["asset"]["assetKey"]["path"][0] for dependency in node["dependencies"]}
        for node in nodes
    }
    partitioned = {node["assetKey"]["path"][0]: node["isPartitioned"] for node in nodes}
    # Unpartitioned assets on partitioned parents: every partition of the parent (AllPartitionMapping, asserted
    # in test_pooled; dagster-graphql 1.13.27 reports it as null because an AllPartitionMapping is falsy).
    assert not partitioned["pooled_model"] and not partitioned["generalisation_matrix"] and partitioned["splits"]
    assert upstream["pooled_model"] == {"splits"}
    assert upstream["generalisation_matrix"] == {"splits", "trained_model", "pooled_model"}

    page.goto(f"{ui['url']}/asset-groups")
    graph = page.locator("[class*=svgContainer]")
    graph.get_by_text("generalisation_matrix", exact=True).wait_for()
    page.wait_for_load_state("networkidle")
    boxes = {name: graph.get_by_text(name, exact=True).bounding_box() for name in CHAIN + ACROSS_DATASETS}
    assert all(boxes.values()), boxes
    assert boxes["pooled_model"]["x"] > boxes["splits"]["x"]
    assert boxes["generalisation_matrix"]["x"] > max(boxes["pooled_model"]["x"], boxes["trained_model"]["x"])
    left, right = boxes[CHAIN[0]], boxes["generalisation_matrix"]
    top = min(box["y"] for box in boxes.values())
    bottom = max(box["y"] for box in boxes.values())
    clip = {"x": left["x"] - 40, "y": top - 20, "width": right["x"] - left["x"] + 280, "height": bottom - top + 150}
    _screenshot(page, ui, "asset_graph_across_datasets", clip=clip)

    page.goto(f"{ui['url']}/assets/generalisation_matrix")
    page.get_by_text("cells_scored", exact=True).first.wait_for()
    figure = _show_markdown_figure(page, "heatmap")
    assert figure.evaluate("image => image.naturalWidth") > 400
    _screenshot(page, ui, "generalisation_matrix_heatmap")
    page.get_by_role("button", name="Close").click()


def test_test_metrics_page_shows_metrics_figures_partitions_and_checks(ui, page):
    metrics = json.loads((ui["artifacts"] / PARTITION / "test_metrics.json").read_text())
    page.goto(f"{ui['url']}/assets/test_metrics")
    page.get_by_text("macro_f1", exact=True).first.wait_for()
    for name in ("macro_f1", "micro_f1", "weighted_f1"):
        row = page.locator("tr", has_text=name).first.inner_text().split()
        assert float(row[-1]) == pytest.approx(metrics[name], abs=0.01), (name, row)
    page.get_by_text("Best checkpoint scored on the test split").wait_for()  # the description
    page.locator("tr", has_text="estimate").get_by_text("95% CI").first.wait_for()  # intervals, shown
    page.locator("tr", has_text="per_class").get_by_text("precision").wait_for()  # the per-class table
    assert page.get_by_text(PARTITION).first.is_visible()  # the latest materialization's partition
    page.wait_for_load_state("networkidle")
    _screenshot(page, ui, "test_metrics_overview")

    figure = _show_markdown_figure(page, "confusion_matrix")
    assert figure.evaluate("image => image.naturalWidth") > 200
    _screenshot(page, ui, "test_metrics_confusion_matrix")
    page.get_by_role("button", name="Close").click()

    page.goto(f"{ui['url']}/assets/test_metrics?view=partitions")
    page.get_by_text("Materialized (1)").wait_for()
    assert page.get_by_text("Missing (1)").is_visible()
    assert page.get_by_text("demo_cinc2017").first.is_visible() and page.get_by_text(PARTITION).first.is_visible()

    page.goto(f"{ui['url']}/assets/test_metrics?view=checks")
    page.get_by_text("macro_f1_beats_majority_baseline").first.wait_for()
    assert page.get_by_text("This is a non-blocking asset check.").is_visible()
    _screenshot(page, ui, "test_metrics_checks")


def test_every_materialization_carries_its_ui_metadata(ui):
    """What the asset pages render, read back from the instance the webserver serves."""
    import dagster as dg

    expected = {
        "label_mapping": {"dagster/row_count", "label_counts", "native_label_counts", "excluded", "unmatched"},
        "processed_records": {
            "discovered",
            "processed",
            "failed",
            "failure_reasons",
            "recording_distributions",
            "example_waveforms",
            "store_bytes",
        },
        "splits": {"class_counts", "train_records", "val_records", "test_records"},
        "trained_model": {
            "parameters",
            "device",
            "epochs_run",
            "best_val_macro_f1",
            "wall_seconds",
            "checkpoint",
            "checkpoint_sha256",
            "training_history",
        },
        "test_metrics": {"macro_f1", "micro_f1", "weighted_f1", "per_class", "confusion_matrix", "f1_scores"},
    }
    embedded = {
        "processed_records": ("example_waveforms", "recording_distributions"),
        "trained_model": ("training_history",),
    }
    embedded["test_metrics"] = ("confusion_matrix", "f1_scores")
    with dg.DagsterInstance.from_config(str(ui["artifacts"].parent / "dagster_home")) as instance:
        for asset, keys in expected.items():
            metadata = instance.get_latest_materialization_event(dg.AssetKey(asset)).asset_materialization.metadata
            assert keys <= set(metadata), (asset, keys - set(metadata))
            for key in embedded.get(asset, ()):
                assert (
                    metadata[key].value.startswith("![") and "data:image/png;base64,iVBORw0KGgo" in metadata[key].value
                )
    assert isinstance(metadata["macro_f1"], dg.FloatMetadataValue)  # numeric: plotted across materializations


def test_automation_page_lists_the_schedule_and_the_sensor(ui, page):
    page.goto(f"{ui['url']}/automation")
    page.get_by_text("dataset_files_sensor").first.wait_for()
    assert page.get_by_text("weekly_full_refresh").first.is_visible()
    page.wait_for_load_state("networkidle")
    _screenshot(page, ui, "automation")


def test_processed_records_page_renders_the_example_waveforms(ui, page):
    page.goto(f"{ui['url']}/assets/processed_records")
    page.get_by_text("example_waveforms", exact=True).first.wait_for()
    assert page.locator("tr", has_text="store_bytes").first.is_visible()
    figure = _show_markdown_figure(page, "example_waveforms")
    assert figure.evaluate("image => image.naturalWidth") > 500
    _screenshot(page, ui, "processed_records_example_waveforms")
    page.get_by_role("button", name="Close").click()


def test_jobs_page_lists_the_quick_start_run(ui, page):
    (run,) = _pipeline_runs(ui["url"])
    page.goto(f"{ui['url']}/locations/{LOCATION}/jobs/ecg_pipeline/runs")
    page.get_by_text(run["runId"][:8]).first.wait_for()
    page.wait_for_load_state("networkidle")
    _screenshot(page, ui, "ecg_pipeline_runs")


def _partition_keys(url: str) -> list[str]:
    query = '{ assetNodeOrError(assetKey: {path: ["label_mapping"]}) { ... on AssetNode { partitionKeys } } }'
    data = _graphql(url, query)
    return data["assetNodeOrError"]["partitionKeys"]


def test_a_dataset_folder_added_while_the_ui_runs_becomes_a_partition_and_the_demo_stays(ui):
    """Last in this module: it adds a partition that the page tests above do not expect."""
    assert _partition_keys(ui["url"]) == ["demo_cinc2017", "demo_cinc2021"]  # registered under the demo setting
    (ui["data"] / "ward_late").mkdir()
    deadline = time.monotonic() + 600  # the registration sensor ticks every 30 s once the daemon runs
    while "ward_late" not in _partition_keys(ui["url"]):
        assert time.monotonic() < deadline, "the daemon's registration sensor never added ward_late"
        time.sleep(2)
    assert _partition_keys(ui["url"]) == ["demo_cinc2017", "demo_cinc2021", "ward_late"]


def test_missing_chromium_is_a_skip_on_a_developer_machine_and_a_failure_in_ci(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        _chromium_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        _chromium_or_skip()

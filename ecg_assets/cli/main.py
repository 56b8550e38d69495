"""`ecg-assets`: the everyday commands, with a persistent Dagster instance set up for you.

    ecg-assets materialize            the whole chain for every dataset present (one ecg_pipeline run each),
                                      then the pooled model and the generalisation matrix (one run), then
                                      the summary of every partition and of the pooled model and matrix
    ecg-assets materialize -p KEY     one partition (repeatable); --select limits the assets, --config-json
                                      gives run config, --job retrain_and_evaluate runs that job instead
    ecg-assets ui                     dagster dev -w workspace.yaml on http://127.0.0.1:3000
    ecg-assets partitions             register the datasets present and list every dataset partition
    ecg-assets summary [-p KEY]       what each partition holds: records, splits, model, test F1, paths

`DAGSTER_HOME` defaults to `./.dagster_home` (created with the project's dagster.yaml), so
runs launched here are visible in the UI afterwards, under Jobs -> ecg_pipeline of the code
location `ecg_assets` (the name `workspace.yaml` gives it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ecg_assets.cli import summary
from ecg_assets.cli.run_output import run_dagster
from ecg_assets.cli.runs import PIPELINE_JOB, PROJECT_ROOT, WORKSPACE_FILE
from ecg_assets.core.settings import ARTIFACTS_DIR_ENV, Settings

INSTANCE_TEMPLATE = PROJECT_ROOT / "dagster.yaml"
# Unpartitioned: run once after every partition's chain (defs/pooled.py).
ACROSS_DATASETS_JOB = "pooled_and_matrix"


def prepare_environment(environ: dict[str, str]) -> dict[str, str]:
    """A copy of `environ` with a persistent DAGSTER_HOME (holding dagster.yaml) and absolute artifact paths."""
    env = dict(environ)
    home = Path(env.get("DAGSTER_HOME") or Path.cwd() / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        if not INSTANCE_TEMPLATE.is_file():
            raise SystemExit(
                f"no instance template at {INSTANCE_TEMPLATE}; set DAGSTER_HOME to a folder with a dagster.yaml"
            )
        shutil.copyfile(INSTANCE_TEMPLATE, home / "dagster.yaml")
    env["DAGSTER_HOME"] = str(home)
    env[ARTIFACTS_DIR_ENV] = str(Settings.from_env(env).artifacts_dir)
    return env


def _dagster() -> str:
    return str(Path(sys.executable).with_name("dagster"))


def materialize(
    partitions: list[str],
    selection: str,
    env: dict[str, str],
    verbose: bool = False,
    config_json: str | None = None,
    job_name: str = PIPELINE_JOB,
) -> list[str]:
    """One run of `job_name` per partition (`python -m ecg_assets.cli.runs`); returns the partitions that failed.

    Shows the run's own log lines and progress bars (every Dagster event with `verbose`); `print_report`
    prints the summary once every run is over.
    """
    failed = []
    for partition in partitions:
        print(f"==> {job_name} run of {selection!r} for partition {partition}", flush=True)
        command = [sys.executable, "-m", "ecg_assets.cli.runs", "--partition", partition, "--select", selection]
        command += ["--job", job_name] + (["--config-json", config_json] if config_json else [])
        if run_dagster(command, env, verbose) != 0:
            failed.append(partition)
    return failed


def across_datasets(env: dict[str, str], verbose: bool = False, config_json: str | None = None) -> bool:
    """One run of the `pooled_and_matrix` job (after every partition's chain); returns whether it succeeded.

    The pooled model trains with the partitions' `trained_model` config, when `config_json` gives one.
    """
    import json

    print(f"==> {ACROSS_DATASETS_JOB} run: the pooled model and the generalisation matrix", flush=True)
    command = [sys.executable, "-m", "ecg_assets.cli.runs", "--job", ACROSS_DATASETS_JOB]
    training = (json.loads(config_json or "{}").get("ops") or {}).get("trained_model")
    if training:
        command += ["--config-json", json.dumps({"ops": {"pooled_model": training}})]
    return run_dagster(command, env, verbose) == 0


def print_report(partitions: list[str], failed: list[str], env: dict[str, str], across_succeeded: bool | None) -> None:
    """The last thing `ecg-assets materialize` prints, after every run: how the runs went, what the partitions
    (and, when the `pooled_and_matrix` run happened, the pooled model and the matrix) now hold, and the
    next command to try. `across_succeeded` is None when that run did not happen."""
    print(
        f"==> {len(partitions) - len(failed)}/{len(partitions)} partition(s) succeeded"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    if across_succeeded is not None:
        outcome = "succeeded" if across_succeeded else "FAILED (its output is above; files below may be older)"
        print(f"==> {ACROSS_DATASETS_JOB} run {outcome}")
    print(f"    DAGSTER_HOME={env['DAGSTER_HOME']}  artifacts: {env[ARTIFACTS_DIR_ENV]}")
    settings = Settings.from_env(env)
    print("\n" + summary.summarize(settings, partitions))
    if across_succeeded is not None:
        print("\n" + summary.summarize_across_datasets(settings.artifacts_dir))
    print("\nnext: ecg-assets ui   (the runs, lineage, metadata and figures at http://127.0.0.1:3000)")


def list_partitions(settings: Settings) -> int:
    """Register the datasets present, then print every registered partition key (one per line) with its folder."""
    import dagster as dg

    from ecg_assets.defs.partitions import register_datasets, registered_datasets

    with dg.DagsterInstance.get() as instance:
        added = register_datasets(instance, settings.dataset_names())
        keys = registered_datasets(instance)
    for key in keys:
        try:
            folder = settings.dataset_dir(key)
        except ValueError:
            print(f"{key}\t(not a valid dataset name: never materializable)")
            continue
        demo, present = settings.is_demo_dataset(key), folder.is_dir()
        note = " (synthetic demo)" if demo else ("" if present else " (no folder here)")
        print(f"{key}\t{folder}{note}")
    if added:
        print(f"registered {len(added)} new partition(s): {', '.join(added)}", file=sys.stderr)
    return 0


def _has_dataset(settings: Settings, key: str) -> bool:
    """Whether `key` names a demo dataset or an existing dataset folder (and is a valid partition key)."""
    try:
        return settings.is_demo_dataset(key) or settings.dataset_dir(key).is_dir()
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ecg-assets", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("materialize", help=f"run the {PIPELINE_JOB} job for dataset partitions")
    run.add_argument(
        "-p", "--partition", action="append", help="partition key (repeatable); default: every dataset present"
    )
    run.add_argument("--select", default="*", help="assets of the job to run (default: '*', all of them)")
    run.add_argument("--job", default=PIPELINE_JOB, help="ecg_pipeline (default) or retrain_and_evaluate")
    run.add_argument("--config-json", help="run configuration, as for `dagster asset materialize --config-json`")
    run.add_argument("-v", "--verbose", action="store_true", help="show every Dagster event and warning")
    ui = commands.add_parser("ui", help="start dagster dev (-w workspace.yaml) bound to 127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    commands.add_parser("partitions", help="register the datasets present; list every dataset partition")
    report = commands.add_parser("summary", help="what each partition holds, read from the artifacts")
    report.add_argument("-p", "--partition", action="append", help="partition key (repeatable); default: all")
    args = parser.parse_args(argv)

    env = prepare_environment(dict(os.environ))
    settings = Settings.from_env(env)
    if args.command == "summary":
        print(summary.summarize(settings, args.partition))
        return 0
    if args.command == "ui":
        command = [_dagster(), "dev", "-h", "127.0.0.1", "-p", str(args.port), "-w", str(WORKSPACE_FILE)]
        return subprocess.run(command, env=env).returncode
    if args.command == "partitions":
        os.environ.update(env)  # the instance is DAGSTER_HOME's
        return list_partitions(settings)
    partitions = args.partition or settings.dataset_names()
    if not partitions:
        print("no dataset partitions found", file=sys.stderr)
        return 1
    invalid = [key for key in partitions if not _has_dataset(settings, key)]
    if invalid:
        print(
            f"no dataset folder for partition(s) {', '.join(invalid)} under {settings.datasets_root}; "
            f"present: {', '.join(settings.dataset_names()) or 'none'}",
            file=sys.stderr,
        )
        return 2
    failed = materialize(partitions, args.select, env, args.verbose, args.config_json, args.job)
    across_succeeded = None
    if not args.partition and args.job == PIPELINE_JOB and args.select == "*":
        across_succeeded = across_datasets(env, args.verbose, args.config_json)
    print_report(partitions, failed, env, across_succeeded)
    return 1 if failed or across_succeeded is False else 0


if __name__ == "__main__":
    sys.exit(main())

"""`ecg-assets`: the everyday commands, with a persistent Dagster instance set up for you.

    ecg-assets materialize            the whole chain for every dataset present (one ecg_pipeline run each)
    ecg-assets materialize -p KEY     one partition (repeatable); --select limits the assets, --config-json
                                      gives run config, --job retrain_and_evaluate runs that job instead
    ecg-assets ui                     dagster dev -w workspace.yaml on http://127.0.0.1:3000
    ecg-assets partitions             register the datasets present and list every dataset partition

`DAGSTER_HOME` defaults to `./.dagster_home` (created with the project's dagster.yaml), so
runs launched here are visible in the UI afterwards, under Jobs -> ecg_pipeline of the code
location `ecg_assets` (the name `workspace.yaml` gives it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ecg_assets.cli.runs import PIPELINE_JOB, PROJECT_ROOT, WORKSPACE_FILE
from ecg_assets.core.settings import ARTIFACTS_DIR_ENV, Settings

INSTANCE_TEMPLATE = PROJECT_ROOT / "dagster.yaml"


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
    partitions: list[str], selection: str, run_config: dict, settings: Settings, job_name: str = PIPELINE_JOB
) -> int:
    """One run of `job_name` per partition, in this process; returns the number of failed partitions."""
    import dagster as dg

    from ecg_assets.cli.runs import run_pipeline
    from ecg_assets.defs.partitions import register_datasets

    failed = []
    with dg.DagsterInstance.get() as instance:
        register_datasets(instance, [*settings.dataset_names(), *partitions])
        for partition in partitions:
            print(f"==> {job_name} run of {selection!r} for partition {partition}", flush=True)
            try:
                result = run_pipeline(instance, partition, selection, run_config, job_name)
            except Exception as error:  # noqa: BLE001 - one partition's failure must not stop the others
                print(f"    {partition}: {type(error).__name__}: {error}", file=sys.stderr)
                failed.append(partition)
                continue
            print(f"    run {result.run_id}: {'succeeded' if result.success else 'FAILED'}", flush=True)
            if not result.success:
                failed.append(partition)
    print(
        f"==> {len(partitions) - len(failed)}/{len(partitions)} partition(s) succeeded"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    print(f"    DAGSTER_HOME={os.environ['DAGSTER_HOME']}  artifacts: {settings.artifacts_dir}")
    return len(failed)


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
    run.add_argument("--config-json", default="{}", help="run config as JSON, as `dagster asset materialize` takes")
    ui = commands.add_parser("ui", help="start dagster dev (-w workspace.yaml) bound to 127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    commands.add_parser("partitions", help="register the datasets present; list every dataset partition")
    args = parser.parse_args(argv)

    env = prepare_environment(dict(os.environ))
    settings = Settings.from_env(env)
    if args.command == "ui":
        command = [_dagster(), "dev", "-h", "127.0.0.1", "-p", str(args.port), "-w", str(WORKSPACE_FILE)]
        return subprocess.run(command, env=env).returncode
    os.environ.update(env)  # the instance, the code location and the step processes read these
    if args.command == "partitions":
        return list_partitions(settings)
    try:
        run_config = json.loads(args.config_json)
    except ValueError as error:
        parser.error(f"--config-json is not valid JSON: {error}")
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
    return 1 if materialize(partitions, args.select, run_config, settings, args.job) else 0


def _has_dataset(settings: Settings, key: str) -> bool:
    """Whether `key` names a demo dataset or an existing dataset folder (and is a valid partition key)."""
    try:
        return settings.is_demo_dataset(key) or settings.dataset_dir(key).is_dir()
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(main())

"""`ecg-assets`: the two everyday commands, with a persistent Dagster instance set up for you.

    ecg-assets materialize            every asset, every dataset partition (dagster CLI per partition)
    ecg-assets materialize -p KEY     one partition
    ecg-assets ui                     dagster dev on http://127.0.0.1:3000
    ecg-assets partitions             list the dataset partitions
    ecg-assets summary [-p KEY]       what each partition holds: records, splits, model, test F1, paths

`DAGSTER_HOME` defaults to `./.dagster_home` (created with the project's dagster.yaml), so
runs launched here are visible in the UI afterwards.
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
from ecg_assets.core.settings import ARTIFACTS_DIR_ENV, Settings

DEFINITIONS_MODULE = "ecg_assets.definitions"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
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
    partitions: list[str], selection: str, env: dict[str, str], verbose: bool = False, config_json: str | None = None
) -> int:
    """Run `dagster asset materialize` once per partition; returns the number of failed partitions.

    Shows the run's own log lines and progress bars (every Dagster event with `verbose`), then the summary
    of what the partitions now hold and the next command to try.
    """
    failed = []
    for partition in partitions:
        print(f"==> materializing {selection!r} for partition {partition}", flush=True)
        command = [_dagster(), "asset", "materialize", "--select", selection, "--partition", partition]
        command += ["--config-json", config_json] if config_json else []
        if run_dagster([*command, "-m", DEFINITIONS_MODULE], env, verbose) != 0:
            failed.append(partition)
    print(
        f"==> {len(partitions) - len(failed)}/{len(partitions)} partition(s) succeeded"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    print(f"    DAGSTER_HOME={env['DAGSTER_HOME']}  artifacts: {env[ARTIFACTS_DIR_ENV]}")
    print("\n" + summary.summarize(Settings.from_env(env), partitions))
    print("\nnext: ecg-assets ui   (the runs, lineage, metadata and figures at http://127.0.0.1:3000)")
    return len(failed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ecg-assets", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("materialize", help="materialize assets for dataset partitions")
    run.add_argument("-p", "--partition", action="append", help="partition key (repeatable); default: all")
    run.add_argument("--select", default="*", help="asset selection (default: '*', the whole chain)")
    run.add_argument("--config-json", help="run configuration, as for `dagster asset materialize --config-json`")
    run.add_argument("-v", "--verbose", action="store_true", help="show every Dagster event and warning")
    ui = commands.add_parser("ui", help="start dagster dev bound to 127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    commands.add_parser("partitions", help="list dataset partitions")
    report = commands.add_parser("summary", help="what each partition holds, read from the artifacts")
    report.add_argument("-p", "--partition", action="append", help="partition key (repeatable); default: all")
    args = parser.parse_args(argv)

    env = prepare_environment(dict(os.environ))
    settings = Settings.from_env(env)
    if args.command == "partitions":
        print("\n".join(settings.dataset_names()))
        return 0
    if args.command == "summary":
        print(summary.summarize(settings, args.partition))
        return 0
    if args.command == "ui":
        command = [_dagster(), "dev", "-h", "127.0.0.1", "-p", str(args.port), "-m", DEFINITIONS_MODULE]
        return subprocess.run(command, env=env).returncode
    partitions = args.partition or settings.dataset_names()
    if not partitions:
        print("no dataset partitions found", file=sys.stderr)
        return 1
    unknown = sorted(set(partitions) - set(settings.dataset_names()))
    if unknown:
        print(
            f"unknown partition(s): {', '.join(unknown)}; known: {', '.join(settings.dataset_names())}", file=sys.stderr
        )
        return 2
    return 1 if materialize(partitions, args.select, env, args.verbose, args.config_json) else 0


if __name__ == "__main__":
    sys.exit(main())

"""`ecg-assets`: the two everyday commands, with a persistent Dagster instance set up for you.

    ecg-assets materialize            every dataset partition's chain (dagster CLI per partition), then
                                      the pooled model and the generalisation matrix (one run)
    ecg-assets materialize -p KEY     one partition's chain
    ecg-assets ui                     dagster dev on http://127.0.0.1:3000
    ecg-assets partitions             list the dataset partitions

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

from ecg_assets.core.settings import ARTIFACTS_DIR_ENV, Settings

DEFINITIONS_MODULE = "ecg_assets.definitions"
# One partition's chain. ('*' would also select the unpartitioned assets downstream of every partition.)
PARTITION_CHAIN = "*test_metrics"
ACROSS_DATASETS = "pooled_model,generalisation_matrix"
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


def materialize(partitions: list[str], selection: str, env: dict[str, str]) -> int:
    """Run `dagster asset materialize` once per partition; returns the number of failed partitions."""
    failed = []
    for partition in partitions:
        print(f"==> materializing {selection!r} for partition {partition}", flush=True)
        command = [_dagster(), "asset", "materialize", "--select", selection, "--partition", partition]
        if subprocess.run([*command, "-m", DEFINITIONS_MODULE], env=env).returncode != 0:
            failed.append(partition)
    print(
        f"==> {len(partitions) - len(failed)}/{len(partitions)} partition(s) succeeded"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    print(f"    DAGSTER_HOME={env['DAGSTER_HOME']}  artifacts: {env[ARTIFACTS_DIR_ENV]}")
    return len(failed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ecg-assets", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("materialize", help="materialize assets for dataset partitions")
    run.add_argument("-p", "--partition", action="append", help="partition key (repeatable); default: all")
    run.add_argument(
        "--select",
        help=f"asset selection per partition (default: {PARTITION_CHAIN!r}, the whole chain; without -p it is "
        f"followed by one run of {ACROSS_DATASETS})",
    )
    ui = commands.add_parser("ui", help="start dagster dev bound to 127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    commands.add_parser("partitions", help="list dataset partitions")
    args = parser.parse_args(argv)

    env = prepare_environment(dict(os.environ))
    settings = Settings.from_env(env)
    if args.command == "partitions":
        print("\n".join(settings.dataset_names()))
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
    failed = materialize(partitions, args.select or PARTITION_CHAIN, env)
    if args.select is None and not args.partition:
        print(f"==> materializing {ACROSS_DATASETS!r} (every dataset)", flush=True)
        command = [_dagster(), "asset", "materialize", "--select", ACROSS_DATASETS, "-m", DEFINITIONS_MODULE]
        failed += subprocess.run(command, env=env).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

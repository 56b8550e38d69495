"""Runs of the `ecg_pipeline` job from the command line, recorded as the UI records its own.

`dagster asset materialize` runs the implicit `__ASSET_JOB` with no code location, so its runs
are missing from *Jobs -> ecg_pipeline*, whose run list the UI filters by job name and by the
code location the run was launched from. `run_pipeline` creates the run with the `ecg_pipeline`
job and the origin of the location `workspace.yaml` declares (`ecg_assets`, the one `dagster dev`
and `ecg-assets ui` serve), then executes it in this process with the job's executor, as
`dagster asset materialize` does. An asset selection runs that subset of the job, checks included.

Uses Dagster's run-creation internals (`create_run_for_job` with a remote origin, `execute_run`)
of the pinned dagster 1.13.27; `ecg_assets_tests/test_cli.py` checks the result in the UI's terms.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping

import dagster as dg

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKSPACE_FILE = PROJECT_ROOT / "workspace.yaml"
DEFINITIONS_MODULE = "ecg_assets.definitions"
DEFINITIONS_ATTRIBUTE = "defs"
PIPELINE_JOB = "ecg_pipeline"


def code_location_origin():
    """The origin of the (one) code location `workspace.yaml` declares, as `dagster dev -w workspace.yaml` builds it."""
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    (origin,) = WorkspaceFileTarget(paths=[str(WORKSPACE_FILE)]).create_origins()
    return origin


def location_name() -> str:
    """The code location's name: every documented way of running uses this one."""
    return code_location_origin().location_name


def _reconstructable_job(job_name: str):
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repository = ReconstructableRepository.for_module(
        DEFINITIONS_MODULE, DEFINITIONS_ATTRIBUTE, working_directory=str(PROJECT_ROOT)
    )
    return repository.get_reconstructable_job(job_name)


def run_pipeline(
    instance: dg.DagsterInstance,
    partition: str | None,
    selection: str = "*",
    run_config: Mapping[str, Any] | None = None,
    job_name: str = PIPELINE_JOB,
) -> dg.JobExecutionResult:
    """Execute one run of `job_name` for `partition` (None for an unpartitioned job such as `pooled_and_matrix`),
    limited to the assets `selection` names (default: all).

    `selection` uses `dagster asset materialize --select` syntax (comma-separated, `*` and `+`);
    selecting an asset outside the job is an error naming the job's assets.
    """
    from dagster._core.definitions.partitions.context import partition_loading_context
    from dagster._core.execution.api import execute_run
    from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin

    recon_job = _reconstructable_job(job_name)
    job = recon_job.get_definition()
    job_assets = set(job.asset_layer.executable_asset_keys)
    with warnings.catch_warnings():  # resolving "*" warns about a beta parameter Dagster itself passes
        warnings.simplefilter("ignore", dg.BetaWarning)
        selected = dg.AssetSelection.from_coercible(selection.split(",")).resolve(job.asset_layer.asset_graph)
    outside = sorted(key.to_user_string() for key in selected - job_assets)
    if outside or not selected:
        names = ", ".join(sorted(key.to_user_string() for key in job_assets))
        raise ValueError(f"--select {selection!r} must name assets of the {job_name} job ({names})")
    if partition is not None:
        with partition_loading_context(dynamic_partitions_store=instance) as context:
            job.validate_partition_key(partition, selected_asset_keys=selected, context=context)
    repository_name = recon_job.repository.get_definition().name
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(code_location_origin(), repository_name), job_name)
    run = instance.create_run_for_job(
        job_def=job,
        run_config=run_config or {},
        tags=job.get_tags_for_partition_key(partition, selected_asset_keys=selected) if partition is not None else {},
        asset_selection=frozenset(selected) if selected != job_assets else None,
        remote_job_origin=origin,
        job_code_origin=recon_job.get_python_origin(),
    )
    return execute_run(recon_job, run, instance)


def main(argv: list[str] | None = None) -> int:
    """`python -m ecg_assets.cli.runs --partition KEY ...`: one run, as `ecg-assets materialize` starts each.

    Registers the datasets present and KEY first, so a new folder is a partition before the run.
    Exit code 0 when the run succeeded, 1 when it failed, 2 when it could not start.
    """
    import argparse
    import json
    import sys

    from ecg_assets.core.settings import Settings
    from ecg_assets.defs.partitions import register_datasets

    parser = argparse.ArgumentParser(prog="python -m ecg_assets.cli.runs", description=main.__doc__)
    parser.add_argument("--partition", help="the dataset partition (none for an unpartitioned job)")
    parser.add_argument("--select", default="*")
    parser.add_argument("--job", default=PIPELINE_JOB)
    parser.add_argument("--config-json", default="{}")
    args = parser.parse_args(argv)
    try:
        run_config = json.loads(args.config_json)
        with dg.DagsterInstance.get() as instance:
            register_datasets(instance, [*Settings.from_env().dataset_names(), *filter(None, [args.partition])])
            result = run_pipeline(instance, args.partition, args.select, run_config, args.job)
    except Exception as error:  # noqa: BLE001 - say why the run could not start, in one line
        print(f"{args.partition}: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())

from ecg_assets.definitions import defs, step_executor

CHAIN = {"label_mapping", "processed_records", "splits", "trained_model", "test_metrics"}


def test_jobs_run_the_checks_of_their_assets_one_op_per_checked_asset():
    pipeline = set(defs.resolve_job_def("ecg_pipeline").graph.node_dict)
    assert pipeline == CHAIN | {"processed_records_checks", "splits_checks", "test_metrics_checks"}
    retrain = set(defs.resolve_job_def("retrain_and_evaluate").graph.node_dict)
    assert retrain == {"trained_model", "test_metrics", "test_metrics_checks"}


def test_runs_fork_each_step_from_a_server_that_preloaded_the_code_location():
    for name in ("ecg_pipeline", "retrain_and_evaluate", "__ASSET_JOB"):
        executor = defs.resolve_job_def(name).executor_def
        assert executor is step_executor and executor.name == "forkserver_multiprocess", name

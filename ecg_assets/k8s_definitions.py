"""The code location for the cluster profile: the same Definitions, each step in its own Kubernetes pod.

`k8s_job_executor` launches every step as a Kubernetes Job and applies the step's
`dagster-k8s/config` op tags, so `trained_model` alone asks for `nvidia.com/gpu`. Load it with
`-m ecg_assets.k8s_definitions` (needs the `cluster` extra: dagster-k8s).
"""

from dagster_k8s import k8s_job_executor

from ecg_assets.definitions import build_definitions

defs = build_definitions(k8s_job_executor)

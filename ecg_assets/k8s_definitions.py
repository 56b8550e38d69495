"""The code location for the cluster profile: the same Definitions, each step in its own Kubernetes pod.

`k8s_job_executor` launches every step as a Kubernetes Job and applies the step's
`dagster-k8s/config` op tags, so `trained_model` alone asks for `nvidia.com/gpu`. Load it with
`-m ecg_assets.k8s_definitions` (needs the `cluster` extra: dagster-k8s).
"""

import dagster as dg
from dagster_k8s import k8s_job_executor

from ecg_assets import definitions  # the module, not its `defs`: one Definitions per module scope

defs = dg.Definitions.merge(definitions.defs, dg.Definitions(executor=k8s_job_executor))

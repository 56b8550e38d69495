"""One partition per source dataset: every asset shares this definition, so lineage maps one to one."""

from __future__ import annotations

import dagster as dg

from ecg_assets.core.settings import Settings

dataset_partitions = dg.StaticPartitionsDefinition(Settings.from_env().dataset_names())

"""The dataset partitions: one per source dataset, a persistent set kept in the Dagster instance.

Every asset and check shares `dataset_partitions`, so lineage maps one to one. The set is dynamic:
a dataset folder becomes a partition when it is registered, and stays one (with its history)
whatever `ECG_DATA_DIR` says later, so demo and real datasets can live side by side. Registration
happens in three places, all through `register_datasets`:

- `dataset_registration_sensor` (`defs/automation.py`), while the daemon runs: a new folder
  becomes a partition without a restart;
- `ecg-assets materialize` and `ecg-assets partitions`;
- `register_present_datasets`, when the code location loads with an instance available
  (`DAGSTER_HOME` set), so `dagster asset materialize --partition NEW` validates from a fresh shell.
"""

from __future__ import annotations

import logging
import os
from typing import Iterable

import dagster as dg

from ecg_assets.core.artifacts import is_valid_dataset_name
from ecg_assets.core.settings import Settings

logger = logging.getLogger(__name__)

DATASETS = "datasets"

dataset_partitions = dg.DynamicPartitionsDefinition(name=DATASETS)


def registered_datasets(instance: dg.DagsterInstance) -> list[str]:
    """Every registered dataset partition key, in registration order."""
    return list(instance.get_dynamic_partitions(DATASETS))


def new_datasets(instance: dg.DagsterInstance, names: Iterable[str]) -> list[str]:
    """The valid dataset names among `names` that are not registered yet (order kept, duplicates dropped)."""
    registered = set(registered_datasets(instance))
    return [name for name in dict.fromkeys(names) if is_valid_dataset_name(name) and name not in registered]


def register_datasets(instance: dg.DagsterInstance, names: Iterable[str]) -> list[str]:
    """Register the valid names not registered yet; returns those added. Invalid folder names are never keys."""
    added = new_datasets(instance, names)
    if added:
        instance.add_dynamic_partitions(DATASETS, added)
        logger.info("registered dataset partition(s): %s", ", ".join(added))
    return added


def register_present_datasets(settings: Settings) -> list[str]:
    """At code load: register the datasets present now in the instance `DAGSTER_HOME` names.

    Without `DAGSTER_HOME` (tests, an ephemeral instance) nothing happens. Never raises: a
    failure to register is logged and the code location still loads.
    """
    if not os.environ.get("DAGSTER_HOME"):
        return []
    try:
        with dg.DagsterInstance.get() as instance:
            return register_datasets(instance, settings.dataset_names())
    except Exception as error:  # noqa: BLE001 - registration must never break code loading
        logger.warning("could not register the dataset partitions at load (%s: %s)", type(error).__name__, error)
        return []

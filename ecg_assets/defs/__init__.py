"""The Dagster layer: partitions, resources, assets, checks, jobs and automation (thin: the work is in `core`)."""

"""Benchmarks: the record store and loader against the per-record `.npz` baseline, and CinC 2017 quality.

Run `python -m benchmarks`; results go to `benchmarks/results/latest.json`. Not tests: they take
minutes and their timings depend on the machine.
"""

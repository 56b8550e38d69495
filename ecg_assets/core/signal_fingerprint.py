"""A compact content fingerprint of a stored recording, computed once when it is stored.

Public databases repackage each other (CinC 2020/2021 holds PTB-XL, CPSC 2018 and Georgia), so one
recording can reach two partitions in different containers, gains and roundings. After
preprocessing (resampled to the same rate, z-scored per lead, float16) such twins hold the same
samples up to rounding. The fingerprint summarises one lead of the canonical tensor: the first
present, non-flat lead in `LEAD_ORDER`, cut into `BLOCKS` blocks whose root-mean-square values are
quantised to `QUANTUM` z-units (z-scoring has removed the gain; an RMS ignores a sign flip and is
insensitive to rounding, which moves it by about 0.001).

Stored as text in the store index (`signal_fingerprint`): `<lead>:<hex of BLOCKS bytes>`, or ``""``
when the record has no non-flat lead. `core.duplicates` buckets fingerprints into candidate
pairs and confirms each by correlating the stored signals.

This module is part of what `processed_records` runs (its code version): keep it small and
stable; the pair search lives in `core.duplicates`.
"""

from __future__ import annotations

import numpy as np

BLOCKS = 32
QUANTUM = 1.0 / 32  # z-units per step of a quantised block RMS (255 steps: up to ~8 z)
STEP = 4  # every fourth sample (125 per second at 500 Hz)


def signal_fingerprint(rows: np.ndarray, lead_mask: np.ndarray, flat_mask: np.ndarray) -> str:
    """Fingerprint of a record from its present leads (`rows`, `[present leads, samples]`, in lead order).

    `lead_mask` and `flat_mask` are the record's 12-lead masks. Returns ``""`` when every present
    lead is flat (nothing to recognise a recording by). Every `STEP`-th sample is used: the
    fingerprint need only be a stable function of the samples, and this quarters its cost.
    """
    usable = np.asarray(lead_mask, dtype=bool) & ~np.asarray(flat_mask, dtype=bool)
    if not usable.any():
        return ""
    lead = int(usable.argmax())
    row = rows[int(np.count_nonzero(lead_mask[:lead]))]
    block = row.shape[-1] // BLOCKS
    samples = row[: block * BLOCKS : STEP].astype(np.float32).reshape(BLOCKS, -1)
    rms = np.einsum("ij,ij->i", samples, samples)
    rms /= samples.shape[1]
    np.sqrt(rms, out=rms)
    rms *= 1 / QUANTUM
    rms += 0.5  # rounds to the nearest step when truncated below
    return f"{lead}:{np.minimum(rms, 255).astype(np.uint8).tobytes().hex()}"


def parse_fingerprint(text: str) -> tuple[int, np.ndarray] | None:
    """`(lead, uint8 [BLOCKS])` of a stored fingerprint, or None when empty or malformed."""
    lead, _, blocks = str(text).partition(":")
    try:
        values = np.frombuffer(bytes.fromhex(blocks), dtype=np.uint8)
        return (int(lead), values) if len(values) == BLOCKS else None
    except ValueError:
        return None

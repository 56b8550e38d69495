"""Saving and loading training checkpoints safely (atomic writes, `weights_only` loads)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from ecg_assets.core.atomic_io import atomic_write_bytes

CHECKPOINT_FORMAT = "ecg_assets.checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, tampered with, or from another format."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> str:
    """Write a checkpoint atomically; returns its SHA-256."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_checkpoint(
    path: Path, map_location: str | torch.device = "cpu", expected_sha256: str | None = None
) -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True` (no arbitrary code), checking its format.

    With `expected_sha256`, the bytes are hashed first and a file whose SHA-256 differs is
    refused; the bytes that were hashed are the bytes that are loaded.
    """
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    data = path.read_bytes()
    if expected_sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256.strip().lower():
            raise CheckpointError(
                f"{path} has SHA-256 {actual}, but {expected_sha256.strip().lower()} was expected: the file changed "
                "after its hash was recorded (replaced, corrupted or tampered with); refusing to load it"
            )
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} is not a loadable checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an ecg_assets checkpoint (expected format {CHECKPOINT_FORMAT})")
    return payload

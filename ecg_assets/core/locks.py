"""One writer per partition: an exclusive lock file that says who holds it.

`exclusive_lock` takes a POSIX record lock (`fcntl.lockf`) on a lock file. The kernel drops
it when the holder exits however it exits (SIGKILL included), so a killed run never leaves a
stale lock; worker processes forked by the holder do not inherit it; it works across machines
on NFS. The holder writes who it is (owner, pid, host, since) into the file, so a process that
has to wait logs what it waits for, and how long it waited once it gets the lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from ecg_assets.core.artifacts import PartitionArtifacts
from ecg_assets.core.atomic_io import remove_temp_files, storage_errors

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2
REPORT_EVERY_SECONDS = 60.0
# POSIX locks belong to a process, not a thread: threads of one process queue on this instead.
_THREAD_LOCKS: dict[Path, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


class LockTimeout(TimeoutError):
    """The lock was not acquired within the allowed time."""


def _thread_lock(path: Path) -> threading.Lock:
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(path, threading.Lock())


def describe_holder(path: Path) -> str:
    """Who holds the lock at `path`, as its holder wrote it (or why that is unknown)."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        holder = {}
    if not holder:
        return "an unknown holder (it has not written its name yet)"
    owner, pid, host, since = (holder.get(key, "?") for key in ("owner", "pid", "host", "since"))
    return f"{owner} (pid {pid} on {host}, since {since})"


def _try_lock(descriptor: int) -> bool:
    try:
        fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:  # EACCES or EAGAIN: another process holds it
        return False


@contextmanager
def exclusive_lock(path: Path, owner: str, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the exclusive lock at `path` for the block, waiting (and saying for whom) while another holds it.

    `owner` describes this holder for others (e.g. "run 1a2b3c (processed_records)"). Raises
    `LockTimeout` after `timeout_s` seconds of waiting (None: wait as long as it takes).
    """
    path = Path(os.path.abspath(path))
    with _thread_lock(path):
        with storage_errors(path, "opening the lock file"):
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            _acquire(descriptor, path, owner, timeout_s)
            holder = {
                "owner": owner,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, json.dumps(holder).encode(), 0)
            yield
        finally:
            os.close(descriptor)  # releases the lock


def _acquire(descriptor: int, path: Path, owner: str, timeout_s: float | None) -> None:
    if _try_lock(descriptor):
        return
    started = time.monotonic()
    holder = describe_holder(path)
    logger.info("%s: waiting for the lock %s, held by %s", owner, path, holder)
    reported = started
    while not _try_lock(descriptor):
        now = time.monotonic()
        if timeout_s is not None and now - started >= timeout_s:
            raise LockTimeout(f"{owner}: gave up after {now - started:.1f} s waiting for {path}, held by {holder}")
        if now - reported >= REPORT_EVERY_SECONDS:
            holder = describe_holder(path)
            logger.info("%s: still waiting (%.0f s) for the lock %s, held by %s", owner, now - started, path, holder)
            reported = now
        time.sleep(POLL_SECONDS)
    logger.info("%s: acquired the lock %s after waiting %.1f s for %s", owner, path, time.monotonic() - started, holder)


@contextmanager
def partition_lock(artifacts: PartitionArtifacts, owner: str) -> Iterator[None]:
    """The partition's exclusive lock; once it is held, temporary files of interrupted writes are removed."""
    with exclusive_lock(artifacts.lock_file, owner):
        for folder in (artifacts.root, artifacts.processed, artifacts.models):
            removed = remove_temp_files(folder)
            if removed:
                names = ", ".join(sorted(path.name for path in removed)[:5])
                logger.info("removed %d temporary file(s) of an interrupted run in %s: %s", len(removed), folder, names)
        yield

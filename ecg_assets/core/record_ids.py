"""Match record ids written by people and other tools (CSV files) to the records of a dataset folder.

An id is normalised (either path separator, no leading `./`, no `.hea/.mat/.dat/.xyz` extension,
no dataset folder name in front), then looked up, first hit wins:

1. exactly, as a record id or as the record's file path;
2. the same, ignoring letter case;
3. by its last path component alone (CinC 2017's `A00/A00001` is the flat file `A00001.mat`),
   then ignoring case, when exactly one record has that name.

Ids that are absolute or contain `..` are rejected: they would resolve outside the dataset folder.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import PurePosixPath
from typing import Iterable, Sequence

KNOWN_EXTENSIONS = (".hea", ".mat", ".dat", ".xyz")
_DRIVE = re.compile(r"^[A-Za-z]:")


def normalize_record_id(raw: str) -> str:
    """POSIX separators, no `./`, no repeated `/`, no signal/header extension."""
    value = re.sub(r"/+", "/", str(raw).strip().replace("\\", "/"))
    while value.startswith("./"):
        value = value[2:]
    for extension in KNOWN_EXTENSIONS:
        if value.lower().endswith(extension):
            return value[: -len(extension)]
    return value


def outside_reason(normalized: str) -> str | None:
    """Why a normalised id would resolve outside the dataset folder, or None when it stays inside."""
    if normalized.startswith("/") or _DRIVE.match(normalized):
        return "an absolute path"
    if ".." in normalized.split("/"):
        return "a path through '..'"
    return None


class RecordIdIndex:
    """Looks up the record an id means. Built from `(record_id, aliases)` pairs, where aliases are
    other names of the record (typically its file path relative to the dataset folder)."""

    def __init__(self, records: Iterable[tuple[str, Sequence[str]]], dataset: str = ""):
        self.dataset = dataset
        self._tables: list[dict[str, set[str]]] = [defaultdict(set) for _ in range(4)]
        for record_id, aliases in records:
            for alias in {record_id, *aliases}:
                key = normalize_record_id(alias)
                name = PurePosixPath(key).name
                for table, value in zip(self._tables, (key, key.casefold(), name, name.casefold())):
                    table[value].add(record_id)

    def match(self, raw: str) -> tuple[str | None, str]:
        """The matching record id and an empty reason, or None and why nothing (or several) matched."""
        value = normalize_record_id(raw)
        if not value:
            return None, "empty record id"
        reason = outside_reason(value)
        if reason:
            return None, f"record id {raw!r} is {reason}: it would resolve outside the dataset folder"
        candidates = [value]
        prefix = f"{self.dataset}/"
        if self.dataset and value.casefold().startswith(prefix.casefold()):
            candidates.append(value[len(prefix) :])
        names = [PurePosixPath(candidate).name for candidate in candidates]
        exact, folded, by_name, by_name_folded = self._tables
        for table, keys in ((exact, candidates), (folded, candidates), (by_name, names), (by_name_folded, names)):
            fold = table is folded or table is by_name_folded
            hits = set().union(*(table.get(key.casefold() if fold else key, set()) for key in keys))
            if len(hits) == 1:
                return hits.pop(), ""
            if hits:
                return None, f"ambiguous: matches {', '.join(sorted(hits)[:5])}"
        return None, "matches no record in the dataset folder"

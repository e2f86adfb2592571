"""Hashes, atomic writes and the JSON sidecar that lets an interrupted batch resume.

A scan counts as done only when its sidecar exists and records the same input hash and
parameters; the sidecar is written last, and every file goes through a temporary name and
`os.replace`, so a run killed at any moment leaves nothing that looks finished.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

__all__ = ["file_sha256", "atomic_path", "write_json", "read_sidecar", "is_done"]


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `final` (same suffixes, so writers pick the format) and move
    it onto `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.with_name(f".tmp{os.getpid()}-{final.name}")
    try:
        yield temp
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)


def write_json(path: str | Path, payload: dict) -> None:
    """Write `payload` as indented JSON, atomically."""
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_sidecar(path: str | Path) -> dict | None:
    """The sidecar's content, or None when it is missing or unreadable (then the scan is redone)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def is_done(sidecar: str | Path, input_sha256: str, params: dict, outputs: list[Path]) -> bool:
    """True when a previous run finished this scan with the same input and parameters."""
    meta = read_sidecar(sidecar)
    return (meta is not None and meta.get("input_sha256") == input_sha256
            and meta.get("params") == params and all(Path(p).exists() for p in outputs))

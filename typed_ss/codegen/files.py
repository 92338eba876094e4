"""The generated files: what one is, writing them deterministically, and checking that they are current.

A write is atomic (a temporary file in the same directory, then ``os.replace``), so a bundler watching
the directory never sees half a file, and a file whose bytes would not change is not touched at all, so
its modification time stays and watchers stay quiet. ``check`` writes nothing: it returns a unified
diff for every file that is missing or different.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GeneratedFile", "check", "write"]


@dataclass(frozen=True)
class GeneratedFile:
    """One file of a generated client: the module rendered from the contract, or a runtime file."""

    name: str
    """The file name, relative to the output directory."""
    text: str


def write(directory: Path, files: Iterable[GeneratedFile]) -> list[Path]:
    """Write ``files`` into ``directory`` (created if needed); returns the paths that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for generated in files:
        path = directory / generated.name
        content = generated.text.encode("utf-8")
        try:
            if path.read_bytes() == content:
                continue
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        _replace(path, content, mode)
        changed.append(path)
    return changed


def check(directory: Path, files: Iterable[GeneratedFile]) -> list[str]:
    """A unified diff (from the file on disk to the generated text) for each stale or missing file."""
    diffs = []
    for generated in files:
        path = directory / generated.name
        try:
            current = path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            current = None
        if current == generated.text:
            continue
        diff = difflib.unified_diff(
            [] if current is None else current.splitlines(keepends=True),
            generated.text.splitlines(keepends=True),
            fromfile=f"{path} (on disk)" if current is not None else f"{path} (missing)",
            tofile=f"{path} (generated)",
        )
        diffs.append("".join(line if line.endswith("\n") else line + "\n" for line in diff))
    return diffs


def _replace(path: Path, content: bytes, mode: int) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

"""The local flow store: JSON lines in a directory, rotated, size-capped.

    <dir>/flows.jsonl          the file being written
    <dir>/flows.1.jsonl ...    older files, flows.<files-1>.jsonl the oldest

Writer (`FlowStore`, the agent's flow logger): each flush appends its records as whole lines in one
`write` (O_APPEND). When the current file would pass `max_bytes / files`, the files shift by one
(the oldest is deleted) and a new current file starts, so the store never holds more than
`max_bytes` (plus one batch): a node's disk never fills with flow logs. Write errors (a full disk,
a read-only or removed directory) raise `StoreError`; the caller counts the records as dropped and
carries on.

Reader (`read_records`, `follow`: `tortie flows`, the web view): files oldest first, line by line;
a line that is not a complete record (torn by a crash mid-write, or foreign) is skipped and
counted in `ReadReport.skipped` by file, so the caller can say so. `follow` yields records appended
after it started, across rotations (it notices the current file being renamed away).
"""

from __future__ import annotations

import errno
import itertools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tortie.flows.records import FlowRecord, InvalidRecord, decode

CURRENT = "flows.jsonl"
DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_FILES = 8


class StoreError(Exception):
    """The store could not be written (the message says why)."""


def file_names(files: int) -> list[str]:
    """Oldest first."""
    return [f"flows.{i}.jsonl" for i in range(files - 1, 0, -1)] + [CURRENT]


class FlowStore:
    def __init__(self, directory: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES,
                 files: int = DEFAULT_FILES) -> None:
        if files < 2 or max_bytes < files * 4096:
            raise ValueError("a flow store needs at least 2 files of at least 4 KiB each")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.files = files
        self.file_bytes = max_bytes // files

    def write(self, records: list[FlowRecord]) -> int:
        """Append the records (one batch); returns the bytes written. Raises StoreError."""
        if not records:
            return 0
        data = "".join(r.encode() + "\n" for r in records).encode()
        try:
            self.directory.mkdir(mode=0o750, parents=True, exist_ok=True)
            current = self.directory / CURRENT
            try:
                size = current.stat().st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(data) > self.file_bytes:
                self._rotate()
            fd = os.open(current, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            try:
                written = os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            raise StoreError(f"cannot write flow records to {self.directory}: {why}") from None
        if written != len(data):
            raise StoreError(f"short write to {self.directory / CURRENT} ({written} of {len(data)} bytes)")
        return written

    def _rotate(self) -> None:
        names = file_names(self.files)  # oldest first
        oldest = self.directory / names[0]
        if oldest.exists():
            oldest.unlink()
        for older, newer in itertools.pairwise(names):
            source = self.directory / newer
            if source.exists():
                source.rename(self.directory / older)

    def size(self) -> int:
        return store_size(self.directory)


def store_size(directory: str | os.PathLike[str]) -> int:
    total = 0
    for entry in Path(directory).glob("flows*.jsonl"):
        try:
            total += entry.stat().st_size
        except FileNotFoundError:
            continue
    return total


@dataclass
class ReadReport:
    skipped: dict[str, int] = field(default_factory=dict)  # file -> unreadable lines

    def note(self, path: Path) -> None:
        self.skipped[str(path)] = self.skipped.get(str(path), 0) + 1


def _files(directory: Path) -> list[Path]:
    found = sorted(directory.glob("flows.*.jsonl"), key=lambda p: -_index(p))
    current = directory / CURRENT
    return [p for p in found if p != current] + ([current] if current.exists() else [])


def _index(path: Path) -> int:
    middle = path.name[len("flows."):-len(".jsonl")]
    return int(middle) if middle.isdigit() else 0


def read_records(directory: str | os.PathLike[str], report: ReadReport | None = None,
                 since: float | None = None) -> Iterator[FlowRecord]:
    """Every readable record, oldest file first (records ending before `since` left out)."""
    report = report if report is not None else ReadReport()
    for path in _files(Path(directory)):
        try:
            fh = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 (closed below)
        except FileNotFoundError:  # rotated away meanwhile
            continue
        with fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    record = decode(line)
                except InvalidRecord:
                    report.note(path)
                    continue
                if since is None or record.end >= since:
                    yield record


def follow(directory: str | os.PathLike[str], report: ReadReport | None = None, poll: float = 0.5,
           stop: Callable[[], bool] = lambda: False) -> Iterator[FlowRecord]:
    """Records appended to the current file from now on, across rotations, until `stop()`.

    The open file is read to its end before switching to a new current file, so lines written just
    before a rotation are not lost."""
    report = report if report is not None else ReadReport()
    path = Path(directory) / CURRENT
    fh = None
    try:
        fh = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 (closed in finally)
        fh.seek(0, os.SEEK_END)
    except FileNotFoundError:
        pass
    pending = ""
    try:
        while not stop():
            if fh is not None:
                pending += fh.read()
                *lines, pending = pending.split("\n")
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        yield decode(line)
                    except InvalidRecord:
                        report.note(path)
            try:
                current = path.stat().st_ino
            except FileNotFoundError:
                current = None
            if current is not None and (fh is None or os.fstat(fh.fileno()).st_ino != current):
                if fh is not None:
                    rest = fh.read()  # what was written before the rename
                    if rest:
                        pending += rest
                        continue
                    fh.close()
                fh, pending = open(path, encoding="utf-8", errors="replace"), ""  # noqa: SIM115
                continue
            time.sleep(poll)
    finally:
        if fh is not None:
            fh.close()

"""Reading manifests for `-f FILE|DIR|-`: every file's documents, validated together.

Contract: `read_manifests(paths)` returns the resources of all documents in all files, in order, or
raises one `ValidationError` that carries every problem of every file (each naming its file). A
directory contributes its `*.yaml`, `*.yml` and `*.json` files in name order (recursively with
`recursive=True`). `-` reads standard input. With `warnings`, the warnings about accepted resources
(fields tortie does not act on) are collected there (`tortie.model.support`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from tortie.common.errors import UserError
from tortie.model import Problem, Resource, ValidationError, load_resources

_SUFFIXES = (".yaml", ".yml", ".json")


def _expand(path: str, recursive: bool) -> list[tuple[str, str]]:
    if path == "-":
        return [("<stdin>", sys.stdin.read())]
    p = Path(path)
    if p.is_dir():
        pattern = "**/*" if recursive else "*"
        files = sorted(f for f in p.glob(pattern) if f.is_file() and f.suffix in _SUFFIXES)
        if not files:
            raise UserError(f"{path}: no .yaml, .yml or .json files in this directory")
        return [(str(f), f.read_text()) for f in files]
    try:
        return [(path, p.read_text())]
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None


def read_manifests(paths: Sequence[str], *, recursive: bool = False, default_namespace: str | None = None,
                   warnings: list[Problem] | None = None) -> list[Resource]:
    resources: list[Resource] = []
    problems = []
    for path in paths:
        for source, text in _expand(path, recursive):
            try:
                resources.extend(load_resources(text, source=source, default_namespace=default_namespace,
                                                warnings=warnings))
            except ValidationError as exc:
                problems.extend(exc.problems)
    if problems:
        raise ValidationError(problems)
    return resources

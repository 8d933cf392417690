"""The lab's errors, part of tortie's one hierarchy (`tortie.common.errors`).

`LabError`: a lab operation failed (the message names the failing command and its stderr, or what was
missing). `LabExists` / `NoSuchLab` are also `UserError`s: the CLI exits 1 with the message.
"""

from __future__ import annotations

from tortie.common.errors import TortieError, UserError


class LabError(TortieError):
    """A lab operation failed (the message includes the failing command and its stderr)."""


class LabExists(LabError, UserError):
    """A lab of that name (or namespaces with its prefix) already exists."""


class NoSuchLab(LabError, UserError):
    """No lab of that name is recorded."""

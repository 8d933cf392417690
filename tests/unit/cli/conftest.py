"""Fixtures of the CLI tests: `tortie(*argv)` runs the CLI in-process against a fresh SQLite datastore
and returns (exit code, stdout, stderr)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tortie.cli.main import main


@pytest.fixture()
def tortie(tmp_path: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    url = f"sqlite://{tmp_path}/ds.db"

    def run(*argv: str) -> tuple[int, str, str]:
        rc = main(["--datastore", url, *argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return run

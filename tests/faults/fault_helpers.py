"""Helpers of the fault suite: faults and status through the product's own CLI.

`lab_cli(dc, *args)` runs `tortie lab ARGS --name <lab> -o json` as an operator would and returns its
JSON; `host_status(dc, host)` is one host of `tortie lab status -o json`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from tortie.lab.datacenter import Datacenter

ModuleLab = Callable[..., Datacenter]


def lab_cli(dc: Datacenter, *args: str, timeout: float = 120.0) -> dict[str, Any]:
    """`tortie lab ARGS --name <lab> -o json`: its JSON output (the command must succeed)."""
    argv = [sys.executable, "-m", "tortie.cli.main", "lab", *args, "--name", dc.name, "-o", "json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def host_status(dc: Datacenter, host: str) -> dict[str, Any]:
    """Host `host` as `tortie lab status -o json` reports it."""
    status = lab_cli(dc, "status")
    found: dict[str, Any] = next(h for h in status["hosts"] if h["name"] == host)
    return found

"""Golden files of the nft renderer: the batch that loads a representative ruleset from scratch.

tests/golden/nft/<scenario>.json holds the libnftables JSON commands (one per line). The real
kernel accepts the same batch (tests/integration/test_nft_driver.py loads this ruleset).
Regenerate after an intended change:
`TORTIE_REGEN_GOLDEN=1 .venv/bin/pytest tests/unit/dataplane/test_nft_golden.py`
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tortie.dataplane.nft.batch import build_batch
from tortie.dataplane.nft.config import RenderConfig
from tortie.dataplane.nft.ir import Ruleset
from tortie.dataplane.nft.ruleset import render_ruleset
from tortie.testing.nft_conformance import sample_ruleset
from tortie.testing.policy_world import ALLOW_ALL, gnp, hep, policy_state, profile, tier, wep

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "golden" / "nft"


def _tiers_and_heps() -> Ruleset:
    objs = [
        wep("a", "10.0.0.1/32", labels={"app": "a"}, profiles=["allow-all", "tagger"], iface="tort-a"),
        ALLOW_ALL,
        profile("tagger", labels_to_apply={"team": "x"}),
        tier("sec", order=10, default_action="Pass"),
        gnp("sec.gate", tier="sec", selector="team == 'x'", egress=[{"action": "Pass"}]),
        gnp("web", order=5, selector="all()", types=["Ingress"]),
        hep("all", iface="*", labels={"role": "host"}),
        gnp(
            "host-ssh",
            selector="role == 'host'",
            ingress=[{"action": "Allow", "protocol": "TCP", "destination": {"ports": [22]}}],
        ),
        gnp("fwd", selector="role == 'host'", applyOnForward=True, ingress=[{"action": "Deny"}]),
        gnp(
            "raw",
            selector="role == 'host'",
            applyOnForward=True,
            doNotTrack=True,
            ingress=[{"action": "Allow", "protocol": "UDP"}],
        ),
        gnp(
            "pre",
            selector="role == 'host'",
            applyOnForward=True,
            preDNAT=True,
            ingress=[{"action": "Deny", "source": {"nets": ["198.51.100.0/24"]}}],
        ),
    ]
    state = policy_state(objs, "h1", RenderConfig(endpoint_to_host_action="Accept"))
    return render_ruleset(state)


SCENARIOS: dict[str, Callable[[], Ruleset]] = {
    "sample": sample_ruleset,
    "tiers-and-host-endpoints": _tiers_and_heps,
}


def _render(name: str) -> str:
    rs = SCENARIOS[name]()
    batch = build_batch("tortie", rs, None, rs.chains, rs.sets, rs.maps)
    return "".join(json.dumps(cmd, sort_keys=True) + "\n" for cmd in batch)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_render_matches_golden(name: str) -> None:
    path = GOLDEN_DIR / f"{name}.json"
    text = _render(name)
    if os.environ.get("TORTIE_REGEN_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with TORTIE_REGEN_GOLDEN=1"
    assert text == path.read_text()


def test_every_golden_file_has_a_scenario() -> None:
    assert {p.stem for p in GOLDEN_DIR.glob("*.json")} == set(SCENARIOS)


def test_rendering_is_deterministic() -> None:
    assert _render("sample") == _render("sample")

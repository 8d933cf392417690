"""Calico's documentation examples (tests/data/calico-docs, one file per page) apply to tortie: each
passes `tortie validate`, or is refused only at a field the compatibility table refuses, for the
reason it gives. Warnings (tuning knobs, accepted-only kinds) are allowed and checked where expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from tortie.cli.main import main as tortie_main

DATA = Path(__file__).resolve().parents[2] / "data" / "calico-docs"

# file -> (field path, start of the reason) for the examples tortie refuses.
REFUSED = {
    "reference-ippool.yaml": ("spec.ipipMode", "is not supported by tortie: IPIP encapsulation"),
}
# file -> text every warning about that file must include one of (others must draw none).
WARNED = {
    "reference-felixconfig.yaml": ("spec.chainInsertMode: accepted but has no effect",
                                   "spec.ipipMTU: accepted but has no effect"),
    "reference-kubecontrollersconfig.yaml": ("tortie runs no Kubernetes controllers",),
    "reference-node.yaml": ("spec.bgp.ipv4IPIPTunnelAddr: accepted but has no effect",),
}
FILES = sorted(p.name for p in DATA.glob("*.yaml"))


def test_the_examples_cover_every_page_family() -> None:
    assert len(FILES) >= 15
    assert {name.split("-")[0] for name in FILES} == {"reference", "networking", "network"}
    assert set(REFUSED) | set(WARNED) <= set(FILES)


@pytest.mark.parametrize("name", FILES)
def test_calico_documentation_example(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = tortie_main(["validate", "-f", str(DATA / name)])
    out, err = capsys.readouterr()
    if name in REFUSED:
        path, reason = REFUSED[name]
        assert rc == 1
        problems = [line for line in (out + err).splitlines() if "): spec" in line]
        assert problems and all(f"): {path}: {reason}" in line for line in problems), problems
        return
    assert rc == 0, out + err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    expected = WARNED.get(name, ())
    assert len(warnings) == len(expected), warnings
    assert all(any(text in w for w in warnings) for text in expected), warnings

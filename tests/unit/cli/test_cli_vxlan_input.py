"""Bad encapsulation input through `tortie apply`: each problem named by document, field and value,
nothing applied. The cases of the VXLAN issue: a pool overlapping another with a different
vxlanMode (in one manifest and against a stored pool), a VNI or port out of range, an IPv6 VXLAN MTU
below 1280, and ipipMode (refused: tortie has no IPIP)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tortie.cli.main import main


def pool(name: str, cidr: str, mode: str) -> str:
    return (f"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: {name}}}\n"
            f"spec: {{cidr: '{cidr}', vxlanMode: {mode}}}\n")


def apply(url: str, path: Path, text: str) -> int:
    path.write_text(text)
    return main(["--datastore", url, "apply", "-f", str(path)])


def names(url: str, capsys: pytest.CaptureFixture[str], kind: str) -> list[str]:
    assert main(["--datastore", url, "get", kind, "-o", "name"]) == 0
    return capsys.readouterr().out.split()


def test_overlapping_pools_must_agree_on_vxlan_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite://{tmp_path / 'ds.db'}"
    manifest = tmp_path / "pools.yaml"
    assert apply(url, manifest, pool("a", "10.244.0.0/16", "Always") + "---\n"
                 + pool("b", "10.244.128.0/17", "Never")) == 1
    err = capsys.readouterr().err
    assert ("IPPool a: spec.vxlanMode: Always (10.244.0.0/16) overlaps IPPool b (10.244.128.0/17) with "
            "vxlanMode Never") in err and "nothing was written" in err and "Traceback" not in err
    assert names(url, capsys, "ippools") == []
    assert apply(url, manifest, pool("a", "10.244.0.0/16", "CrossSubnet")) == 0
    capsys.readouterr()
    assert apply(url, manifest, pool("c", "10.244.64.0/18", "Always")) == 1  # against the stored pool
    assert "IPPool c: spec.vxlanMode: Always (10.244.64.0/18) overlaps IPPool a" in capsys.readouterr().err
    assert apply(url, manifest, pool("c", "10.244.64.0/18", "CrossSubnet") + "---\n"
                 + pool("d", "10.245.0.0/16", "Never")) == 0  # same mode, or no overlap: fine
    capsys.readouterr()
    # changing the stored pool's mode while its overlapping sibling keeps the old one is refused too
    assert apply(url, manifest, pool("a", "10.244.0.0/16", "Always")) == 1
    assert "overlaps IPPool c" in capsys.readouterr().err


def test_vni_port_mtu_and_ipip_are_refused_with_field_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite://{tmp_path / 'ds.db'}"
    manifest = tmp_path / "bad.yaml"
    text = ("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\n"
            "spec: {vxlanVNI: 16777216, vxlanPort: 0, vxlanMTUV6: 1200, vxlanMTU: 1400}\n---\n"
            + pool("ipip", "10.250.0.0/16", "Never").replace("vxlanMode: Never", "ipipMode: Always"))
    assert apply(url, manifest, text) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for field, what in [("spec.vxlanVNI", "16777216 is out of range: a VXLAN VNI is 24 bits"),
                        ("spec.vxlanPort", "0 is out of range"),
                        ("spec.vxlanMTUV6", "1200 is below IPv6's minimum link MTU of 1280"),
                        ("spec.ipipMode", "tortie implements no IPIP")]:
        assert field in err and what in err, (field, what, err)
    assert names(url, capsys, "felixconfigurations") == [] and names(url, capsys, "ippools") == []

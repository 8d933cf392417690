"""Bad IPv6 input through `tortie apply`: each problem named by document and field, nothing applied.

The cases of the IPv6 issue: an IPv6 pool smaller than its block size, an IPv4 blockSize on an IPv6
pool, `ipVersion: 6` with an IPv4 CIDR in the same rule, and an IPv6 peerIP for an IPv4-only node.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tortie.cli.main import main

NODE_V4_ONLY = """\
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: h1}
spec: {bgp: {ipv4Address: 172.31.0.11/24}}
"""

GOOD = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: good-v6}
spec: {cidr: "fd00:10::/112", blockSize: 122}
"""

BAD = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: tiny-v6}
spec: {cidr: "fd00:20::/124"}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: v4-sized-v6}
spec: {cidr: "fd00:30::/64", blockSize: 26}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: mixed}
spec:
  ingress:
  - action: Allow
    ipVersion: 6
    source: {nets: ["10.0.0.0/8"]}
"""

PEER_V6 = """\
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor-v6}
spec: {node: h1, peerIP: "fd00:172:31::1", asNumber: 65000}
"""


def test_bad_ipv6_documents_are_named_and_nothing_is_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite://{tmp_path / 'ds.db'}"
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(GOOD + "---\n" + BAD)
    assert main(["--datastore", url, "apply", "-f", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bad.yaml: document 1 (IPPool/tiny-v6)" in err
    for where, what in [
        ("IPPool/tiny-v6", "spec.cidr"),
        ("IPPool/tiny-v6", "smaller than one /122 block"),
        ("IPPool/v4-sized-v6", "spec.blockSize"),
        ("IPPool/v4-sized-v6", "IPv6 block sizes must be 116-128"),
        ("GlobalNetworkPolicy/mixed", "spec.ingress[0].source.nets"),
        ("GlobalNetworkPolicy/mixed", "ipVersion is 6"),
    ]:
        assert where in err and what in err, (where, what, err)
    assert main(["--datastore", url, "get", "ippools", "-o", "name"]) == 0
    assert capsys.readouterr().out.strip() == ""  # not even the good pool


def test_an_ipv6_peer_for_an_ipv4_only_node_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite://{tmp_path / 'ds.db'}"
    node, peer = tmp_path / "node.yaml", tmp_path / "peer.yaml"
    node.write_text(NODE_V4_ONLY)
    peer.write_text(GOOD + "---\n" + PEER_V6)
    assert main(["--datastore", url, "apply", "-f", str(node)]) == 0
    capsys.readouterr()
    assert main(["--datastore", url, "apply", "-f", str(peer)]) == 1
    err = capsys.readouterr().err
    assert "BGPPeer tor-v6: spec.peerIP: fd00:172:31::1 is IPv6 but Node h1 has no spec.bgp.ipv6Address" in (
        err
    )
    assert "--ip6" in err and "nothing was written" in err
    assert main(["--datastore", url, "get", "bgppeers,ippools", "-o", "name"]) in (0, 1)
    assert "tor-v6" not in capsys.readouterr().out
    # the same peer with the node's IPv6 address in the same manifest is fine
    peer.write_text(NODE_V4_ONLY.replace("}}", ", ipv6Address: 'fd00:172:31::b/64'}}") + "---\n" + PEER_V6)
    assert main(["--datastore", url, "apply", "-f", str(peer)]) == 0, capsys.readouterr().err

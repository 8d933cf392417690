"""StagedKubernetesNetworkPolicy through the CLI on a sqlite datastore: validate, apply, get, and
`tortie policy promote` into the Kubernetes networking.k8s.io/v1 NetworkPolicy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tortie.cli.main import main
from tortie.datastore.resources import ResourceStore
from tortie.datastore.url import open_datastore
from tortie.model import ValidationError, parse_resource
from tortie.model.specs_staged import StagedKubernetesNetworkPolicySpec

K8S_NP = "NetworkPolicy.networking.k8s.io"
MANIFEST = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: old, namespace: shop}
spec: {podSelector: {}}
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: web-to-db, namespace: shop, labels: {team: db}}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 5432}]
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: old, namespace: shop}
spec: {stagedAction: Delete, podSelector: {}}
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: old, namespace: shop}
spec: {selector: all()}
"""
STAGED = "apiVersion: projectcalico.org/v3\nkind: StagedKubernetesNetworkPolicy\n" \
         "metadata: {name: s, namespace: shop}\n"


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite://{tmp_path / 'ds.db'}"
    manifest = tmp_path / "staged.yaml"
    manifest.write_text(MANIFEST)
    assert main(["--datastore", url, "apply", "-f", str(manifest)]) == 0
    return url


def store(url: str) -> ResourceStore:
    return ResourceStore(open_datastore(url))


def test_the_staged_spec_is_a_kubernetes_network_policy_spec() -> None:
    r = parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "StagedKubernetesNetworkPolicy",
                        "metadata": {"name": "a", "namespace": "shop"},
                        "spec": {"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}})
    assert r.key == "/calico/resources/v3/projectcalico.org/stagedkubernetesnetworkpolicies/shop/a"
    spec = r.spec_as(StagedKubernetesNetworkPolicySpec)
    assert spec.effective_staged_action == "Set" and spec.effective_policy_types == ("Ingress", "Egress")
    assert parse_resource(r.to_wire()) == r


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{stagedAction: Delete, policyTypes: [Ingress]}",
         "spec.policyTypes: must be empty when stagedAction"),
        ("{stagedAction: Ignore}", "spec.stagedAction: 'Ignore' is not supported by tortie"),
        ("{tier: default}", "spec.tier: unknown field"),
        ("{selector: all()}", "spec.selector: unknown field 'selector': a Kubernetes NetworkPolicy selects"),
        ("{ingress: [{ports: [{port: 80, endPort: 70}]}]}", "spec.ingress[0].ports[0].endPort: 70 must be"),
        ("{podSelector: {matchLabels: {'bad key!': x}}}", "spec.podSelector.matchLabels"),
    ],
)
def test_bad_staged_kubernetes_specs_are_refused_with_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, message: str
) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(STAGED + f"spec: {spec}\n")
    assert main(["validate", "-f", str(f)]) == 1
    out = capsys.readouterr().out
    assert "document 0 (StagedKubernetesNetworkPolicy/s): " + message in out
    with pytest.raises(ValidationError):
        parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "StagedKubernetesNetworkPolicy",
                        "metadata": {"name": "s", "namespace": "shop"}, "spec": {"stagedAction": "Learn"}})


def test_get_lists_staged_kubernetes_policies(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["--datastore", url, "get", "sknp", "-n", "shop"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAMESPACE", "NAME", "POD-SELECTOR", "STAGED-ACTION"]
    assert out[1].split() == ["shop", "old", "<none>", "Delete"]
    assert out[2].split() == ["shop", "web-to-db", "app=db", "Set"]
    assert [r.metadata.name for r in store(url).list(K8S_NP)] == ["old"]  # staged: nothing enforced


def test_promote_set_creates_the_kubernetes_network_policy(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--datastore", url, "policy", "promote", "shop/web-to-db"]) == 0
    assert "NetworkPolicy.networking.k8s.io shop/web-to-db created" in capsys.readouterr().out
    s = store(url)
    promoted = s.get(K8S_NP, "web-to-db", "shop")
    wire = promoted.to_wire()
    assert wire["apiVersion"] == "networking.k8s.io/v1" and wire["kind"] == "NetworkPolicy"
    assert promoted.metadata.labels == {"team": "db"}
    assert wire["spec"] == {
        "podSelector": {"matchLabels": {"app": "db"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 5432}]}],
    }
    assert [r.metadata.name for r in s.list("StagedKubernetesNetworkPolicy")] == ["old"]


def test_promote_delete_and_ambiguous_names(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--datastore", url, "policy", "promote", "-n", "shop", "old"]) == 1
    err = capsys.readouterr().err
    assert "StagedNetworkPolicy and StagedKubernetesNetworkPolicy in 'shop'" in err
    assert "--kind snp or --kind sknp" in err
    assert main(["--datastore", url, "policy", "promote", "-n", "shop", "old", "--kind", "sknp"]) == 0
    s = store(url)
    assert s.list(K8S_NP) == []
    assert main(["--datastore", url, "policy", "promote", "shop/old", "--kind", "sknp"]) == 1
    assert "no staged policy 'old'" in capsys.readouterr().err

"""The resource verbs with the Kubernetes kinds, in-process, against an embedded SQLite datastore."""

from __future__ import annotations

from pathlib import Path

import yaml

MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    team: web
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-web
  namespace: shop
spec:
  podSelector:
    matchLabels:
      app: web
  ingress:
  - from:
    - namespaceSelector: {}
    ports:
    - port: 80
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-web
  namespace: shop
spec:
  selector: app == "web"
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata:
  name: guard
spec:
  priority: 10
  subject:
    namespaces: {}
  egress:
  - action: Pass
    to:
    - networks:
      - 10.0.0.0/8
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata:
  name: default
spec:
  subject:
    namespaces: {}
"""

BAD = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: fine, namespace: shop}
spec: {podSelector: {}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad, namespace: shop}
spec:
  ingress:
  - ports: [{port: 80, endPort: 70}]
    from: [{ipBlock: {cidr: 10.0.0.0/24, except: [10.1.0.0/24]}}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: anp}
spec: {priority: 2000, subject: {namespaces: {}}}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: mine}
spec: {subject: {namespaces: {}}}
"""


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_apply_names_each_kind_without_warnings(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rc, out, err = tortie("apply", "-f", _write(tmp_path, "m.yaml", MANIFEST))
    assert rc == 0, out + err
    assert out.splitlines()[:5] == [
        "Namespace shop created",
        "NetworkPolicy.networking.k8s.io shop/allow-web created",
        "NetworkPolicy shop/allow-web created",
        "AdminNetworkPolicy.policy.networking.k8s.io guard created",
        "BaselineAdminNetworkPolicy.policy.networking.k8s.io default created",
    ]
    assert "warning" not in err  # every kind is enforced now
    rc, out, err = tortie("apply", "-f", _write(tmp_path, "c.yaml", MANIFEST.split("---\n")[2]))
    assert rc == 0 and "warning" not in err  # Calico kinds only: no warning


def test_get_tells_the_two_network_policies_apart(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tortie("apply", "-f", _write(tmp_path, "m.yaml", MANIFEST))
    rc, out, _ = tortie("get", "netpol", "-n", "shop", "-o", "wide")
    assert rc == 0
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAMESPACE", "NAME", "POD-SELECTOR", "POLICY-TYPES", "ENFORCED-AS"]
    assert row.split() == ["shop", "allow-web", "app=web", "knp.default.allow-web"]
    rc, out, _ = tortie("get", "networkpolicy", "-n", "shop")
    assert out.splitlines()[1].split() == ["shop", "allow-web", "default"]
    _, out, _ = tortie("get", "anp", "-o", "wide")
    assert out.splitlines()[1].split() == ["guard", "10", "kanp.adminnetworkpolicy.guard"]
    _, out, _ = tortie("get", "ns", "-o", "wide")
    assert out.splitlines()[1].split() == ["shop", "team=web", "kns.shop"]
    _, out, _ = tortie("get", "knp", "-A", "-o", "name")
    assert out.split() == ["networkpolicy.networking.k8s.io/allow-web"]


def test_get_yaml_gives_back_the_manifest(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tortie("apply", "-f", _write(tmp_path, "m.yaml", MANIFEST))
    written = list(yaml.safe_load_all(MANIFEST))
    for alias, doc in (("ns", 0), ("netpol", 1), ("anp", 3), ("banp", 4)):
        args = ["get", alias, written[doc]["metadata"]["name"], "-o", "yaml"]
        if alias == "netpol":
            args += ["-n", "shop"]
        rc, out, _ = tortie(*args)
        assert rc == 0, out
        got = yaml.safe_load(out)
        for field in ("resourceVersion", "uid", "creationTimestamp", "generation"):  # store-maintained
            got["metadata"].pop(field)
        assert got == {**written[doc], "spec": written[doc].get("spec", {})}


def test_create_replace_delete(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, "m.yaml", MANIFEST)
    assert tortie("create", "-f", path)[0] == 0
    rc, out, err = tortie("create", "-f", path)
    assert rc == 1 and "already exists" in out + err
    changed = MANIFEST.replace("priority: 10", "priority: 20")
    assert tortie("replace", "-f", _write(tmp_path, "r.yaml", changed))[0] == 0
    assert tortie("get", "anp", "-o", "yaml")[1].count("priority: 20") == 1
    rc, out, _ = tortie("delete", "netpol", "allow-web", "-n", "shop")
    assert rc == 0 and "NetworkPolicy.networking.k8s.io allow-web deleted" in out
    assert "allow-web" in tortie("get", "networkpolicy", "-n", "shop")[1]  # Calico's is untouched
    rc, out, err = tortie("delete", "netpol", "allow-web", "-n", "shop")
    assert rc == 1 and "not found" in out + err
    assert tortie("delete", "-f", path, "--skip-not-exists")[0] == 0
    assert tortie("get", "banp")[1].strip().splitlines() == ["NAME"]


def test_a_policy_may_name_a_namespace_that_does_not_exist(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    manifest = MANIFEST.split("---\n")[1].replace("namespace: shop", "namespace: not-there-yet")
    assert tortie("apply", "-f", _write(tmp_path, "n.yaml", manifest))[0] == 0
    assert "allow-web" in tortie("get", "netpol", "-n", "not-there-yet")[1]


def test_bad_input_is_reported_and_nothing_is_applied(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, "bad.yaml", BAD)
    rc, out, err = tortie("validate", "-f", path)
    assert rc == 1
    for fragment in (
        "document 1 (NetworkPolicy/bad): spec.ingress[0].ports[0].endPort: 70 must be greater than or equal",
        "spec.ingress[0].from[0].ipBlock.except[0]: 10.1.0.0/24 must be a strict subset of `cidr`",
        "document 2 (AdminNetworkPolicy/anp): spec.priority: 2000 is out of range",
        "document 3 (BaselineAdminNetworkPolicy/mine): metadata.name: 'mine' is not allowed",
    ):
        assert fragment in out, out
    rc, out, err = tortie("apply", "-f", path)
    assert rc == 1 and "Traceback" not in out + err
    assert tortie("get", "netpol", "-A")[1].strip().splitlines() == ["NAMESPACE  NAME  POD-SELECTOR"]


def test_label_and_patch_keep_the_kubernetes_kind(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tortie("apply", "-f", _write(tmp_path, "m.yaml", MANIFEST))
    assert tortie("label", "ns", "shop", "env=prod")[0] == 0
    assert tortie("patch", "anp", "guard", "-p", '{"spec": {"priority": 3}}')[0] == 0
    assert "env=prod" in tortie("get", "ns")[1]
    got = yaml.safe_load(tortie("get", "anp", "guard", "-o", "yaml")[1])
    assert (got["apiVersion"], got["kind"], got["spec"]["priority"]) == (
        "policy.networking.k8s.io/v1alpha1",
        "AdminNetworkPolicy",
        3,
    )
    rc, out, err = tortie("patch", "anp", "guard", "-p", '{"spec": {"priority": 5000}}')
    assert rc == 1 and "spec.priority" in out + err


def test_get_lists_the_translations_the_agent_enforces(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    shadowed = MANIFEST.replace(
        "name: allow-web\n  namespace: shop\nspec:\n  selector",
        "name: knp.default.allow-web\n  namespace: shop\nspec:\n  selector",
    )
    assert tortie("apply", "-f", _write(tmp_path, "m.yaml", shadowed))[0] == 0
    rc, out, err = tortie("get", "networkpolicy", "-n", "shop", "-o", "yaml")
    (np,) = list(yaml.safe_load_all(out))  # the stored knp.default.allow-web is shadowed
    assert np["metadata"]["annotations"] == {
        "tortie.io/translated-from": "NetworkPolicy.networking.k8s.io shop/allow-web"
    }
    assert np["spec"]["ingress"][0]["metadata"]["annotations"] == {"origin": "spec.ingress[0].from[0]"}
    assert "NetworkPolicy shop/knp.default.allow-web is shadowed by the translation of" in err
    _, out, _ = tortie("get", "gnp", "-o", "name")
    assert out.split() == [
        "globalnetworkpolicy/kanp.adminnetworkpolicy.guard",
        "globalnetworkpolicy/kbanp.baselineadminnetworkpolicy.default",
    ]
    rc, out, _ = tortie("get", "profile", "kns.shop", "-o", "yaml")
    assert rc == 0 and yaml.safe_load(out)["spec"]["labelsToApply"]["pcns.team"] == "web"
    rc, out, err = tortie("delete", "profile", "kns.shop")
    assert rc == 1 and "is the translation of Namespace shop" in out + err
    assert tortie("delete", "ns", "shop")[0] == 0
    rc, out, err = tortie("get", "profile", "kns.shop")
    assert rc == 1 and "not found" in out + err


PODS = """\
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: h1-k8s-web--0-eth0, namespace: shop, labels: {app: web}}
spec: {orchestrator: k8s, pod: web-0, workload: web-0, endpoint: eth0, node: h1, ipNetworks: [10.0.0.1/32],
       interfaceName: tortweb0, profiles: [kns.shop]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: h2-k8s-db--0-eth0, namespace: store, labels: {app: db}}
spec: {orchestrator: k8s, pod: db-0, workload: db-0, endpoint: eth0, node: h2, ipNetworks: [10.0.1.1/32],
       interfaceName: tortdb0, profiles: [kns.store]}
"""


def test_trace_explains_a_verdict_in_kubernetes_terms(tortie, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tortie("apply", "-f", _write(tmp_path, "m.yaml", MANIFEST), "-f", _write(tmp_path, "p.yaml", PODS))
    # from a namespace with no Namespace object: its profile does not exist
    rc, out, _ = tortie("policy", "trace", "--from", "store/db-0", "--to", "shop/web-0", "--port", "80")
    assert rc == 3, out
    assert "no Namespace store: its profile kns.store does not exist" in out
    tortie(
        "apply",
        "-f",
        _write(tmp_path, "n.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: store}\n"),
    )
    rc, out, _ = tortie("policy", "trace", "--from", "store/db-0", "--to", "shop/web-0", "--port", "80")
    assert rc == 0, out
    assert (
        "rule NetworkPolicy(shop/knp.default.allow-web) ingress[0] "
        "[Kubernetes NetworkPolicy shop/allow-web, spec.ingress[0].from[0]]: Allow"
    ) in out
    assert "profile kns.store [Kubernetes Namespace store]" in out
    rc, out, _ = tortie("policy", "trace", "--from", "store/db-0", "--to", "web-0", "--port", "81")
    assert rc == 3, out
    assert "isolated by Kubernetes NetworkPolicy shop/allow-web: none of their rules allows this" in out

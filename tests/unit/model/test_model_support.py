"""Nothing accepted is ignored (issue 18): the support table covers every field, the modules it
names really read their fields, rejected fields refuse the object, warned fields draw a warning, and
docs/reference/compatibility.md is the table rendered."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tortie.model import ValidationError, load_resources, parse_resource
from tortie.model.metadata import METADATA
from tortie.model.resource import MODELS
from tortie.model.schema import Struct
from tortie.model.support import (
    SUPPORT_MODULES,
    Default,
    Implemented,
    Informational,
    Rejected,
    Warned,
    nested_struct,
    notices,
    support_of,
)
from tortie.model.support_doc import PAGE, render
from tortie.testing.model_samples import REFUSED, VALID

ROOT = Path(__file__).resolve().parents[3]


def every_field() -> list[tuple[str, type[Any], str, str]]:
    """(where, record class, attribute, wire name) of every field of every kind and of metadata."""
    out: list[tuple[str, type[Any], str, str]] = []
    seen: set[tuple[type[Any], str]] = set()

    def visit(where: str, struct: Struct[Any]) -> None:
        for spec in struct.fields:
            if (struct.cls, spec.attr) not in seen:
                seen.add((struct.cls, spec.attr))
                out.append((where, struct.cls, spec.attr, spec.wire))
            sub = nested_struct(spec.codec)
            if sub is not None and not any(c is sub.cls for _, c, _, _ in out[:-1] if c is not struct.cls):
                visit(where, sub)

    visit("metadata", METADATA)
    for kind, model in MODELS.items():
        visit(kind, model.spec)
    return out


FIELDS = every_field()

# Product code that lives in tortie.model: the decoder of Calico's stored IPAM objects and the block
# value the allocator, the calc and BGP all use. The validators (specs_*, schema, resource) never count.
RECORD_MODULES = {"tortie.model.ipam_block", "tortie.model.ipam_records"}


def _source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} does not exist"
    return Path(spec.origin).read_text()


def test_every_field_of_every_kind_is_read_by_the_product_or_classified() -> None:
    """The walk the issue asks for: a field passes only if product code outside the validators reads
    it (its Implemented status names the modules, and each of them mentions the field), or it is
    classified warned, rejected or informational (descriptive in Calico too)."""
    failures = []
    for where, cls, attr, wire in FIELDS:
        try:
            support = support_of(cls, attr)
        except KeyError as exc:
            failures.append(f"{where}: {exc}")
            continue
        kinds = {type(s) for s in support}
        assert kinds <= {Implemented, Default, Informational, Warned, Rejected}
        assert Default not in kinds or len(support) > 1, f"{cls.__name__}.{attr}: Default needs a condition"
        for status in support[:-1]:
            assert getattr(status, "when", None) is not None, f"{cls.__name__}.{attr}: only the last is plain"
        for status in support:
            if isinstance(status, Implemented):
                assert status.by, f"{cls.__name__}.{attr}: Implemented names no module"
                for module in status.by:
                    assert not module.startswith("tortie.model") or module in RECORD_MODULES, module
                    text = _source(module)
                    if not re.search(rf"\b(effective_)?{attr}\b", text) and f'"{wire}"' not in text:
                        failures.append(f"{where} {cls.__name__}.{attr}: {module} does not read it")
        if not kinds & {Implemented, Warned, Rejected, Informational}:
            failures.append(f"{where} {cls.__name__}.{attr}: neither read by the product nor classified")
    assert failures == []


def test_the_table_has_no_stale_entries() -> None:
    present = {(cls, attr) for _, cls, attr, _ in FIELDS}
    for module in set(SUPPORT_MODULES.values()):
        __import__(module)
        stale = [f"{c.__name__}.{a}" for (c, a) in sys.modules[module].TABLE if (c, a) not in present]
        assert stale == [], module


def test_compatibility_page_is_the_rendered_table() -> None:
    committed = (ROOT / PAGE).read_text()
    assert committed == render(), "run: python -m tortie.model.support_doc --write"


@pytest.mark.parametrize(("obj", "path", "start"), REFUSED, ids=[p for _, p, _ in REFUSED])
def test_calico_valid_objects_tortie_cannot_honour_are_refused_at_the_field(
        obj: dict[str, Any], path: str, start: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_resource(obj, source="f.yaml")
    found = [(p.path, p.message) for p in caught.value.problems]
    assert any(p == path and m.startswith(start) for p, m in found), found
    assert all(p.source == "f.yaml" and p.kind == obj["kind"] for p in caught.value.problems)


def test_rule_http_and_services_are_clear_errors_never_silent() -> None:
    text = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: web}
spec:
  ingress:
  - action: Allow
    protocol: TCP
    http: {methods: [GET], paths: [{prefix: /api}]}
  - action: Allow
    source: {services: {name: frontend, namespace: shop}}
"""
    with pytest.raises(ValidationError) as caught:
        load_resources(text, source="gnp.yaml")
    messages = {p.path: p.message for p in caught.value.problems}
    assert "application-layer proxy" in messages["spec.ingress[0].http"]
    assert "matches nothing" not in str(caught.value)
    assert messages["spec.ingress[1].source.services"].startswith("is not implemented yet")
    assert "Services as a kind" in messages["spec.ingress[1].source.services"]


def test_value_dependent_fields_are_rejected_only_for_values_tortie_cannot_honour() -> None:
    pool = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p"},
            "spec": {"cidr": "10.0.0.0/16", "ipipMode": "Never", "vxlanMode": "Never"}}
    parse_resource(pool)
    pool["spec"]["vxlanMode"] = "CrossSubnet"
    parse_resource(pool)
    pool["spec"]["ipipMode"] = "Always"
    pool["spec"]["vxlanMode"] = "Never"
    with pytest.raises(ValidationError, match=r"spec\.ipipMode: is not supported by tortie: IPIP "
                       r"encapsulation: tortie implements no IPIP .*use vxlanMode Always or CrossSubnet"):
        parse_resource(pool)


def test_warned_fields_name_the_object_the_field_and_what_tortie_does_instead() -> None:
    text = """
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {chainInsertMode: Append, bpfEnabled: false, ipv6Support: false, iptablesBackend: NFT}
"""
    warnings: list[Any] = []
    (resource,) = load_resources(text, source="felix.yaml", warnings=warnings)
    shown = [str(w) for w in warnings]
    assert shown == [
        "felix.yaml: document 0 (FelixConfiguration/default): spec.iptablesBackend: accepted but has no "
        "effect: tortie programs nftables (table inet tortie) and reads it back on its own schedule",
        "felix.yaml: document 0 (FelixConfiguration/default): spec.chainInsertMode: accepted but has no "
        "effect: tortie programs nftables (table inet tortie) and reads it back on its own schedule",
    ]
    assert [n.path for n in notices(resource)] == ["spec.iptablesBackend", "spec.chainInsertMode"]


def test_every_valid_sample_warns_only_about_warned_fields() -> None:
    for kind, wire in VALID.items():
        resource = parse_resource(wire)
        for notice in notices(resource):
            assert notice.kind == kind and notice.message, notice


def test_checking_one_kind_loads_only_its_family_s_table() -> None:
    script = (
        "import sys, json\n"
        "from tortie.model import parse_resource\n"
        "parse_resource({'apiVersion': 'projectcalico.org/v3', 'kind': 'WorkloadEndpoint', "
        "'metadata': {'name': 'n-k8s-w-eth0', 'namespace': 'a'}, 'spec': {'ipNetworks': ['10.0.0.1/32']}})\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('tortie.model.support'))))\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["tortie.model.support", "tortie.model.support_endpoint"]

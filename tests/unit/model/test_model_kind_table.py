"""`tortie.model.resource.MODELS`: the kind table loads each kind's spec module on first lookup.

Checked in fresh interpreters (the point is what gets imported): validating one kind imports that
kind's spec module and no other; membership, iteration and `len` import none; `Spec` is the union of
every kind's spec type, in table order. In-process: the table is a complete, read-only mapping whose
entries are the specs the typed records promise.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import pytest

import tortie.model as model
from tortie.model import kinds
from tortie.model.resource import MODELS, KindModel, KindTable
from tortie.model.schema import Struct
from tortie.model.specs_bgp_filter import BGPFilterSpec
from tortie.model.specs_controllers import KubeControllersConfigurationSpec
from tortie.model.specs_k8s import K8sNetworkPolicySpec, NamespaceSpec
from tortie.model.specs_k8s_admin import AdminNetworkPolicySpec, BaselineAdminNetworkPolicySpec
from tortie.model.specs_node_status import CalicoNodeStatusSpec
from tortie.model.specs_staged import (
    StagedGlobalNetworkPolicySpec,
    StagedKubernetesNetworkPolicySpec,
    StagedNetworkPolicySpec,
)

SPEC_MODULES = (
    "specs_bgp",
    "specs_bgp_filter",
    "specs_controllers",
    "specs_endpoint",
    "specs_felix",
    "specs_ipam",
    "specs_k8s",
    "specs_k8s_admin",
    "specs_node_status",
    "specs_policy",
    "specs_staged",
)


def loaded_after(code: str) -> list[str]:
    """The tortie.model.specs_* modules a fresh interpreter holds after running `code`."""
    script = (
        "import sys, json\n"
        f"{code}\n"
        "names = [m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('tortie.model.specs_')]\n"
        "print(json.dumps(sorted(names)))\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    names: list[str] = json.loads(proc.stdout)
    return names


POOL = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "IPPool",
    "metadata": {"name": "p"},
    "spec": {"cidr": "10.0.0.0/24"},
}


def test_importing_the_model_loads_no_spec_module() -> None:
    code = (
        "from tortie.model import parse_resource, Resource, MODELS, ValidationError\n"
        "import tortie.model.resource\n"
        "assert 'IPPool' in MODELS and 'Nope' not in MODELS and len(MODELS) == 28\n"
        "assert list(MODELS)[0] == 'IPPool'"
    )
    assert loaded_after(code) == []


@pytest.mark.parametrize(
    ("kind", "spec", "module"),
    [
        ("IPPool", {"cidr": "10.0.0.0/24"}, "specs_ipam"),
        ("Node", {}, "specs_bgp"),
        ("FelixConfiguration", {}, "specs_felix"),
        ("Profile", {}, "specs_policy"),
    ],
)
def test_validating_one_kind_loads_only_its_spec_module(kind: str, spec: dict[str, Any], module: str) -> None:
    obj = {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": {"name": "x"}, "spec": spec}
    code = f"from tortie.model import parse_resource\nparse_resource({obj!r})"
    assert loaded_after(code) == [module]


def test_errors_about_kinds_load_nothing() -> None:
    code = (
        "from tortie.model import ValidationError, parse_resource\n"
        "try:\n"
        "    parse_resource({'apiVersion': 'projectcalico.org/v3', 'kind': 'ippool'})\n"
        "except ValidationError as e:\n"
        "    assert \"use 'IPPool'\" in str(e), e\n"
        "else:\n"
        "    raise AssertionError('accepted')"
    )
    assert loaded_after(code) == []


def test_spec_union_is_built_on_first_use() -> None:
    code = (
        "import tortie.model.resource as r\n"
        "assert 'Spec' not in vars(r)\n"
        "from tortie.model import Spec, IPPoolSpec\n"
        "args = Spec.__args__\n"
        "from tortie.model.specs_k8s_admin import BaselineAdminNetworkPolicySpec as Last\n"
        "assert args[0] is IPPoolSpec and args[-1] is Last and len(args) == 28, args\n"
        "assert r.Spec is Spec"
    )
    assert loaded_after(code) == list(SPEC_MODULES)


def test_table_covers_every_kind_in_order() -> None:
    assert list(MODELS) == [k.kind for k in kinds.KINDS if k.kind in MODELS]
    assert set(MODELS) <= {k.kind for k in kinds.KINDS}
    assert len(MODELS) == len(list(MODELS)) == 28


def test_entries_are_the_kinds_typed_specs() -> None:
    typed = {
        "IPPool": model.IPPoolSpec,
        "IPReservation": model.IPReservationSpec,
        "BGPConfiguration": model.BGPConfigurationSpec,
        "BGPPeer": model.BGPPeerSpec,
        "Node": model.NodeSpec,
        "FelixConfiguration": model.FelixConfigurationSpec,
        "Tier": model.TierSpec,
        "NetworkPolicy": model.NetworkPolicySpec,
        "GlobalNetworkPolicy": model.GlobalNetworkPolicySpec,
        "StagedNetworkPolicy": StagedNetworkPolicySpec,
        "StagedGlobalNetworkPolicy": StagedGlobalNetworkPolicySpec,
        "StagedKubernetesNetworkPolicy": StagedKubernetesNetworkPolicySpec,
        "Profile": model.ProfileSpec,
        "NetworkSet": model.NetworkSetSpec,
        "GlobalNetworkSet": model.GlobalNetworkSetSpec,
        "WorkloadEndpoint": model.WorkloadEndpointSpec,
        "HostEndpoint": model.HostEndpointSpec,
        "IPAMConfiguration": model.IPAMConfigurationSpec,
        "IPAMBlock": model.IPAMBlockSpec,
        "BlockAffinity": model.BlockAffinitySpec,
        "IPAMHandle": model.IPAMHandleSpec,
        "KubeControllersConfiguration": KubeControllersConfigurationSpec,
        "BGPFilter": BGPFilterSpec,
        "CalicoNodeStatus": CalicoNodeStatusSpec,
        "Namespace": NamespaceSpec,
        "NetworkPolicy.networking.k8s.io": K8sNetworkPolicySpec,
        "AdminNetworkPolicy.policy.networking.k8s.io": AdminNetworkPolicySpec,
        "BaselineAdminNetworkPolicy.policy.networking.k8s.io": BaselineAdminNetworkPolicySpec,
    }
    assert set(typed) == set(MODELS)
    for kind, cls in typed.items():
        entry = MODELS[kind]
        assert isinstance(entry, KindModel) and entry.kind == kind
        assert isinstance(entry.spec, Struct) and entry.spec.cls is cls
        assert MODELS[kind] is entry  # loaded once
    checked = {k for k, m in MODELS.items() if m.checks}
    assert checked == {
        "Tier",
        "NetworkPolicy",
        "GlobalNetworkPolicy",
        "NetworkSet",
        "GlobalNetworkSet",
        "FelixConfiguration",
        "StagedNetworkPolicy",
        "StagedGlobalNetworkPolicy",
        "Namespace",
        "BaselineAdminNetworkPolicy.policy.networking.k8s.io",
    }


def test_table_is_a_read_only_mapping() -> None:
    assert isinstance(MODELS, Mapping) and isinstance(MODELS, KindTable)
    with pytest.raises(KeyError):
        MODELS["ippool"]
    assert MODELS.get("Nope") is None
    assert not hasattr(MODELS, "__setitem__")
    assert dict(MODELS.items()) == {k: MODELS[k] for k in MODELS}


def test_resource_round_trip_still_uses_the_table() -> None:
    r = model.parse_resource(POOL)
    assert r.spec_as(model.IPPoolSpec).cidr == "10.0.0.0/24"
    assert model.parse_resource(r.to_wire()) == r

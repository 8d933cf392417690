"""YAML/JSON input and output: streams, list wrappers, problem collection across documents, syntax
errors with line numbers, YAML 1.2 scalars, and output that loads back unchanged."""

from __future__ import annotations

import json

import pytest
import yaml

from tortie.common.errors import UserError
from tortie.model import (
    IPPoolSpec,
    Metadata,
    Resource,
    TierSpec,
    ValidationError,
    dump_json,
    dump_yaml,
    load_resources,
)

POOL = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool-a
spec:
  cidr: 10.20.0.0/16
"""
TIER = """\
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: sec
spec:
  order: 100
"""


def problems_of(text: str, source: str = "in.yaml") -> list[tuple[int, str, str, str]]:
    with pytest.raises(ValidationError) as info:
        load_resources(text, source=source)
    return [(p.document, p.kind, p.path, p.message) for p in info.value.problems]


def test_multi_document_stream_in_order() -> None:
    resources = load_resources(POOL + "---\n" + TIER, source="m.yaml")
    assert [(r.kind, r.metadata.name) for r in resources] == [("IPPool", "pool-a"), ("Tier", "sec")]
    assert resources[0].spec_as(IPPoolSpec).cidr == "10.20.0.0/16"


def test_empty_documents_and_comments_are_skipped() -> None:
    assert load_resources("") == []
    assert load_resources("# nothing here\n") == []
    assert len(load_resources("---\n" + POOL + "---\n---\n" + TIER + "---\n")) == 2


def test_problems_of_all_documents_are_collected_with_their_index() -> None:
    text = "\n---\n".join(
        [
            POOL,
            POOL.replace("10.20.0.0/16", "10.20.0.0/33"),
            TIER,
            TIER.replace("order: 100", "order: x\n  defaultAction: Allow"),
            "apiVersion: projectcalico.org/v3\nkind: Widget\nmetadata: {name: w}\n",
        ]
    )
    found = problems_of(text)
    assert [(d, k, p) for d, k, p, _ in found] == [
        (1, "IPPool", "spec.cidr"),
        (3, "Tier", "spec.order"),
        (3, "Tier", "spec.defaultAction"),
        (4, "Widget", "kind"),
    ]


def test_validation_error_is_a_user_error_and_lists_every_problem() -> None:
    with pytest.raises(ValidationError) as info:
        load_resources(
            POOL.replace("pool-a", "Pool_A") + "---\n" + TIER.replace("100", "'x'"), source="f.yaml"
        )
    err = info.value
    assert isinstance(err, UserError) and isinstance(err, ValueError)
    lines = str(err).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("f.yaml: document 0 (IPPool/Pool_A): metadata.name: ")
    assert lines[1].startswith("f.yaml: document 1 (Tier/sec): spec.order: expected a number")


def test_yaml_syntax_error_reports_line_and_keeps_earlier_documents_checked() -> None:
    text = POOL.replace("10.20.0.0/16", "10.20.0.1/16") + "---\nkind: IPPool\nmetadata: {name: [x\nspec: {}\n"
    found = problems_of(text, "broken.yaml")
    assert found[0][:3] == (0, "IPPool", "spec.cidr")
    document, kind, path, message = found[1]
    assert (document, kind, path) == (1, "", "")
    assert message.startswith("YAML syntax error at line 10")


def test_yaml_syntax_error_string_mentions_file_and_line() -> None:
    with pytest.raises(ValidationError) as info:
        load_resources("a: b\n c: d\n", source="x.yaml")
    assert str(info.value).startswith("x.yaml: document 0: YAML syntax error at line 2")


def test_duplicate_keys_are_errors() -> None:
    found = problems_of(POOL + "  cidr: 10.30.0.0/16\n")
    assert "duplicate key 'cidr'" in found[0][3] and "line 7" in found[0][3]
    with pytest.raises(ValidationError) as info:
        load_resources('{"apiVersion": "a", "apiVersion": "b"}')
    assert "duplicate key 'apiVersion'" in str(info.value)


def test_non_mapping_document() -> None:
    found = problems_of("- just\n- a list\n")
    assert found == [
        (0, "", "", "expected a resource (a mapping with apiVersion, kind, metadata and spec), got a list")
    ]


@pytest.mark.parametrize(
    "wrapper",
    [
        {"apiVersion": "v1", "kind": "List"},
        {"apiVersion": "projectcalico.org/v3", "kind": "List"},
    ],
)
def test_generic_list_wrapper(wrapper: dict[str, str]) -> None:
    items = [yaml.safe_load(POOL), yaml.safe_load(TIER)]
    text = yaml.safe_dump({**wrapper, "items": items})
    assert [r.kind for r in load_resources(text)] == ["IPPool", "Tier"]


def test_kind_list_items_may_omit_kind() -> None:
    text = """\
apiVersion: projectcalico.org/v3
kind: IPPoolList
metadata: {resourceVersion: "12"}
items:
- metadata: {name: a}
  spec: {cidr: 10.1.0.0/16}
- apiVersion: projectcalico.org/v3
  kind: IPPool
  metadata: {name: b}
  spec: {cidr: 10.2.0.0/16}
"""
    assert [r.metadata.name for r in load_resources(text)] == ["a", "b"]


def test_problems_inside_a_list_carry_the_item_path() -> None:
    text = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                yaml.safe_load(POOL),
                {**yaml.safe_load(POOL), "spec": {"cidr": "10.0.0.1/8"}},
                "oops",
            ],
            "extra": 1,
        }
    )
    found = problems_of(text, "list.json")
    assert [(d, p) for d, _, p, _ in found] == [(0, "extra"), (0, "items[1].spec.cidr"), (0, "items[2]")]


def test_list_wrapper_api_version_is_checked() -> None:
    found = problems_of(yaml.safe_dump({"apiVersion": "v2", "kind": "List", "items": []}))
    assert found[0][2] == "apiVersion"


def test_json_object_and_array() -> None:
    pool, tier = yaml.safe_load(POOL), yaml.safe_load(TIER)
    assert [r.kind for r in load_resources(json.dumps(pool))] == ["IPPool"]
    assert [r.kind for r in load_resources("  \n" + json.dumps([pool, tier], indent=2))] == ["IPPool", "Tier"]


def test_json_array_elements_are_documents() -> None:
    pool = yaml.safe_load(POOL)
    bad = {**pool, "metadata": {"name": "b"}, "spec": {"cidr": "x"}}
    found = problems_of(json.dumps([pool, pool, bad]), "a.json")
    assert [(d, p) for d, _, p, _ in found] == [(2, "spec.cidr")]


def test_json_syntax_error_reports_line() -> None:
    found = problems_of('{\n  "kind": "IPPool",\n  "spec": {,}\n}', "bad.json")
    assert found[0][0] == 0
    assert found[0][3].startswith("JSON syntax error at line 3")


@pytest.mark.parametrize(
    ("scalar", "value"),
    [
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("Y", "Y"),
        ("2024-01-01", "2024-01-01"),
        ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z"),
        ("1_000", "1_000"),
    ],
)
def test_yaml_core_schema_keeps_yaml11_lookalikes_as_strings(scalar: str, value: str) -> None:
    # Label values must be strings; YAML 1.1 would turn these into booleans, numbers or dates.
    text = POOL.replace("  name: pool-a", f"  name: pool-a\n  annotations: {{note: {scalar}}}")
    res = load_resources(text)[0]
    assert res.metadata.annotations["note"] == value


def test_yaml_base60_is_not_applied_to_ports_and_communities() -> None:
    text = """\
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec:
  communities: [{name: c, value: 100:20}]
  prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [c, 65000:59]}]
"""
    res = load_resources(text)[0]
    assert res.to_wire()["spec"]["communities"] == [{"name": "c", "value": "100:20"}]
    assert load_resources(dump_yaml([res])) == [res]


def test_yaml_numbers_and_booleans() -> None:
    text = POOL.replace("cidr: 10.20.0.0/16", "cidr: 10.20.0.0/16\n  blockSize: 0x1a\n  natOutgoing: True")
    spec = load_resources(text)[0].spec_as(IPPoolSpec)
    assert spec.block_size == 26 and spec.nat_outgoing is True


@pytest.mark.parametrize(
    "tricky",
    [
        "yes",
        "0o17",
        "1e5",
        "80:59",
        "true",
        "null",
        "~",
        "012",
        "0x1F",
        ".5",
        "2001:db8::1",
        "- x",
        "a: b",
        "",
        " lead",
        "#x",
        "'q'",
        "ü",
    ],
)
def test_dumped_strings_load_back_as_the_same_strings(tricky: str) -> None:
    res = Resource.of("Tier", "t", TierSpec(), annotations={"k": tricky})
    assert load_resources(dump_yaml([res])) == [res]
    assert load_resources(dump_json([res])) == [res]


def test_dump_json_shapes() -> None:
    a = Resource.of("Tier", "a", TierSpec(order=1.0))
    b = Resource.of("Tier", "b", TierSpec())
    one = json.loads(dump_json([a]))
    assert one == {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Tier",
        "metadata": {"name": "a"},
        "spec": {"order": 1},
    }
    many = json.loads(dump_json([a, b]))
    assert many["apiVersion"] == "v1" and many["kind"] == "List" and len(many["items"]) == 2
    assert json.loads(dump_json([])) == {"apiVersion": "v1", "kind": "List", "items": []}
    assert load_resources(dump_json([a, b])) == [a, b]


def test_dump_yaml_documents() -> None:
    a = Resource.of("Tier", "a", TierSpec())
    assert dump_yaml([]) == ""
    assert dump_yaml([a]) == "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: a\nspec: {}\n"
    assert dump_yaml([a, a]).count("---\n") == 1


def test_default_namespace_fills_namespaced_kinds_only() -> None:
    text = (
        """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: np}
spec: {}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: np2, namespace: other}
spec: {}
---
"""
        + POOL
    )
    resources = load_resources(text, default_namespace="shop")
    assert [r.metadata.namespace for r in resources] == ["shop", "other", None]
    assert resources[0].key == "/calico/resources/v3/projectcalico.org/networkpolicies/shop/np"


def test_missing_namespace_without_default_is_a_problem() -> None:
    found = problems_of("apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: s}\n")
    assert found == [(0, "NetworkSet", "metadata.namespace", "is required: NetworkSet is a namespaced kind")]


def test_store_metadata_survives_a_yaml_round_trip_as_strings() -> None:
    res = Resource(
        "projectcalico.org/v3",
        "Tier",
        Metadata(name="t", resource_version="42", uid="0f7e", creation_timestamp="2024-02-03T04:05:06Z"),
        TierSpec(),
    )
    back = load_resources(dump_yaml([res]))[0]
    assert back == res
    assert back.metadata.resource_version == "42"

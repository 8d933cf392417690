"""One conformance suite for `NftDriver`: run against `FakeNftables` and the real kernel.

Usage: subclass `NftDriverConformance` in a test module and provide a fixture `nft` returning the
driver under test (real: an `NftablesDriver` in a throwaway namespace). What it pins down is what
the policy manager relies on: a missing table lists as None; a rendered ruleset loads in one batch
and lists back to the same digests, elements and map entries (`parse_table`); element deltas, for
every set layout the renderer uses (interval sets of both families with adjacent and open-ended
ranges, address . protocol . port sets, verdict maps); atomicity (a failing batch changes
nothing); interval overlap rejection; referenced chains and sets cannot be deleted; flushing then
deleting works in one batch; `generation()` counts committed batches only.
"""

from __future__ import annotations

from typing import Any

import pytest

from tortie.dataplane.drivers.nftables import NftDriver, NftError
from tortie.dataplane.nft.batch import build_batch
from tortie.dataplane.nft.ir import Ruleset, Verdict
from tortie.dataplane.nft.parse import parse_table
from tortie.dataplane.nft.ruleset import render_ruleset
from tortie.testing.policy_world import ALLOW_ALL, gnp, hep, network_set, policy_state, pool, wep

TABLE = "tortie"


def sample_ruleset() -> Ruleset:
    objs = [
        wep("a", ["10.0.0.1/32", "fd00::1/128"], labels={"app": "a"}, profiles=["allow-all"], iface="tort-a"),
        wep(
            "b",
            "10.0.0.2/32",
            labels={"app": "b"},
            iface="tort-b",
            ports=[{"name": "http", "protocol": "TCP", "port": 8080}],
        ),
        wep("c", "10.0.1.3/32", node="h2", labels={"app": "b"}),
        ALLOW_ALL,
        network_set("ext", ["192.168.0.0/16", "192.168.1.0/24", "10.9.0.0/24"], labels={"app": "a"}),
        hep("h1-eth0", iface="eth0", ips=["172.31.0.11"]),
        pool("p", "10.0.0.0/16", nat_outgoing=True),
        gnp(
            "b-in",
            selector="app == 'b'",
            ingress=[
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"selector": "app == 'a'"},
                    "destination": {"ports": [80, "1000:2000", "http"]},
                },
                {"action": "Allow", "protocol": "ICMP", "notICMP": {"type": 8, "code": 0}},
                {"action": "Log"},
                {"action": "Deny", "source": {"nets": ["10.9.0.0/16"]}},
                {"action": "Pass"},
            ],
        ),
    ]
    return render_ruleset(policy_state(objs, "h1"))


def load(driver: NftDriver, rs: Ruleset) -> None:
    driver.run(build_batch(TABLE, rs, None, rs.chains, rs.sets, rs.maps))


class NftDriverConformance:
    @pytest.fixture
    def nft(self) -> Any:
        """Each concrete suite (fake driver, libnftables, `nft` command) overrides this fixture."""
        pytest.fail("a conformance subclass must provide the `nft` fixture: the driver under test")

    def test_missing_table_lists_as_none(self, nft: NftDriver) -> None:
        assert nft.list_table("tortie-absent") is None

    def test_rendered_ruleset_round_trips(self, nft: NftDriver) -> None:
        rs = sample_ruleset()
        load(nft, rs)
        objects = nft.list_table(TABLE)
        assert objects is not None
        kernel = parse_table(objects)
        assert {n: c.digests for n, c in kernel.chains.items()} == {
            n: c.digests for n, c in rs.chains.items()
        }
        assert {n: c.base for n, c in kernel.chains.items()} == {n: c.base for n, c in rs.chains.items()}
        assert kernel.elements == rs.elements
        assert kernel.maps == {k: v for k, v in rs.map_elements.items()}
        assert set(kernel.sets) == set(rs.sets)
        # reconciling against what we read back is a no-op
        assert build_batch(TABLE, rs, kernel, rs.chains, rs.sets, rs.maps) == []

    def test_element_deltas(self, nft: NftDriver) -> None:
        rs = sample_ruleset()
        load(nft, rs)
        kernel = parse_table(nft.list_table(TABLE) or [])
        name = next(n for n, e in rs.elements.items() if "192.168.0.0/16" in e)
        rs.elements[name] = (rs.elements[name] - {"192.168.0.0/16"}) | {"192.168.1.0/24", "192.168.0.7/32"}
        batch = build_batch(TABLE, rs, kernel, (), [name], ())
        assert [next(iter(c)) for c in batch] == ["delete", "add"]
        nft.run(batch)
        assert parse_table(nft.list_table(TABLE) or []).elements[name] == rs.elements[name]

    def test_failed_batch_changes_nothing(self, nft: NftDriver) -> None:
        rs = sample_ruleset()
        load(nft, rs)
        before = nft.list_table(TABLE)
        ref = {"family": "inet", "table": TABLE}
        with pytest.raises(NftError):
            nft.run(
                [
                    {"add": {"chain": {**ref, "name": "new-one"}}},
                    {"add": {"rule": {**ref, "chain": "new-one", "expr": [{"jump": {"target": "nowhere"}}]}}},
                ]
            )
        assert _without_counters(nft.list_table(TABLE)) == _without_counters(before)

    def test_overlapping_interval_is_rejected(self, nft: NftDriver) -> None:
        load(nft, sample_ruleset())
        ref = {"family": "inet", "table": TABLE, "name": "all-pools-4"}
        with pytest.raises(NftError):
            nft.run([{"add": {"element": {**ref, "elem": [{"prefix": {"addr": "10.0.5.0", "len": 24}}]}}}])
        nft.run([{"add": {"element": {**ref, "elem": [{"prefix": {"addr": "10.1.0.0", "len": 24}}]}}}])
        with pytest.raises(NftError):
            nft.run([{"delete": {"element": {**ref, "elem": [{"prefix": {"addr": "10.2.0.0", "len": 24}}]}}}])

    def test_referenced_objects_cannot_be_deleted(self, nft: NftDriver) -> None:
        rs = sample_ruleset()
        load(nft, rs)
        ref = {"family": "inet", "table": TABLE}
        with pytest.raises(NftError):
            nft.run([{"delete": {"chain": {**ref, "name": "pi-g.b-in"}}}])
        used_set = next(n for n in rs.sets if n.startswith("s4-"))
        with pytest.raises(NftError):
            nft.run([{"delete": {"set": {**ref, "name": used_set}}}])
        endpoint_chain = rs.map_elements["to-wl"]["tort-b"].target
        assert endpoint_chain is not None
        with pytest.raises(NftError):
            nft.run([{"delete": {"chain": {**ref, "name": endpoint_chain}}}])
        nft.run(
            [
                {"delete": {"element": {**ref, "name": "to-wl", "elem": ["tort-b"]}}},
                {"delete": {"chain": {**ref, "name": endpoint_chain}}},
            ]
        )
        kernel = parse_table(nft.list_table(TABLE) or [])
        assert endpoint_chain not in kernel.chains and "tort-b" not in kernel.maps["to-wl"]
        assert kernel.maps["from-wl"]["tort-b"] == Verdict("goto", "fw-tort-b")


    def test_generation_counts_committed_batches(self, nft: NftDriver) -> None:
        load(nft, sample_ruleset())
        first = nft.generation()
        assert first is not None
        nft.list_table(TABLE)
        assert nft.generation() == first  # reading changes nothing
        ref = {"family": "inet", "table": TABLE, "name": "all-pools-4"}
        nft.run([{"add": {"element": {**ref, "elem": [{"prefix": {"addr": "10.1.0.0", "len": 24}}]}}}])
        assert nft.generation() == first + 1
        with pytest.raises(NftError):
            nft.run([{"delete": {"element": {**ref, "elem": ["10.9.9.9"]}}}])
        assert nft.generation() == first + 1  # a rejected batch commits nothing
        nft.run([{"add": {"chain": {"family": "inet", "table": TABLE, "name": "extra"}}}])
        assert nft.generation() == first + 2

    def test_every_element_shape_round_trips(self, nft: NftDriver) -> None:
        """Element-only batches (the raw nfnetlink path of the real driver) for each set layout the
        renderer uses: interval sets of both families (host addresses, prefixes, adjacent ranges,
        ranges reaching the top of the address space), address . protocol . port sets, verdict maps."""
        rs = sample_ruleset()
        load(nft, rs)
        kernel = parse_table(nft.list_table(TABLE) or [])
        s4 = next(n for n in rs.sets if n.startswith("s4-"))
        s6 = next(n for n in rs.sets if n.startswith("s6-"))
        n4 = next(n for n in rs.sets if n.startswith("n4-"))
        rs.elements[s4] = frozenset(
            {"10.7.0.0/32", "10.7.0.1/32", "10.7.0.2/31", "10.8.0.0/16", "255.255.255.0/24", "0.0.0.0/8"}
        )
        rs.elements[s6] = frozenset({"fd00::7/128", "fd00::8/127", "fd01::/64", "ffff::/16"})
        rs.elements[n4] = frozenset({"10.7.0.1|6|80", "10.7.0.1|17|53", "10.7.0.9|132|9"})
        rs.map_elements["to-wl"] = {**rs.map_elements["to-wl"], "tort-z": Verdict("goto", "tw-tort-b")}
        del rs.map_elements["from-wl"]["tort-a"]
        nft.run(build_batch(TABLE, rs, kernel, (), [s4, s6, n4], ["to-wl", "from-wl"]))
        after = parse_table(nft.list_table(TABLE) or [])
        assert {n: after.elements[n] for n in (s4, s6, n4)} == {n: rs.elements[n] for n in (s4, s6, n4)}
        assert after.maps["to-wl"] == rs.map_elements["to-wl"]
        assert after.maps["from-wl"] == rs.map_elements["from-wl"]
        # and back: removing some (an address next to one that stays, an open-ended range)
        rs.elements[s4] = frozenset({"10.7.0.1/32", "10.8.0.0/16"})
        rs.elements[s6] = frozenset({"fd00::8/127"})
        nft.run(build_batch(TABLE, rs, after, (), [s4, s6], ()))
        final = parse_table(nft.list_table(TABLE) or [])
        assert (final.elements[s4], final.elements[s6]) == (rs.elements[s4], rs.elements[s6])


def _without_counters(objects: list[dict[str, Any]] | None) -> Any:
    if objects is None:
        return None
    out = []
    for obj in objects:
        if "rule" in obj:
            rule = dict(obj["rule"])
            rule["expr"] = [e for e in rule["expr"] if "counter" not in e]
            out.append({"rule": rule})
        else:
            out.append(obj)
    return out

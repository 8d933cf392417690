"""One side (source or destination) of a `ResolvedRule`, as one value (pure).

`RuleSide.of(rule, src)` gathers the side's matches, which the message spells as `src_*` /
`dst_*` fields: nets and notNets (CIDR text), IP set ids that must all / must none hold the
address, port ranges and named-port set ids (the port must be in one range OR (address,
protocol, port) in one set; the `not_` ones must all fail). The nft renderer and the user-space
evaluator read a rule through it, so both see the same fields the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from tortie.dataplane.messages.policy import PortRange, ResolvedRule


@dataclass(frozen=True)
class RuleSide:
    nets: tuple[str, ...]
    not_nets: tuple[str, ...]
    sets: tuple[str, ...]
    not_sets: tuple[str, ...]
    ports: tuple[PortRange, ...]
    not_ports: tuple[PortRange, ...]
    named_port_sets: tuple[str, ...]
    not_named_port_sets: tuple[str, ...]

    @classmethod
    def of(cls, r: ResolvedRule, src: bool) -> RuleSide:
        if src:
            return cls(
                r.src_nets,
                r.not_src_nets,
                r.src_sets,
                r.not_src_sets,
                r.src_ports,
                r.not_src_ports,
                r.src_named_port_sets,
                r.not_src_named_port_sets,
            )
        return cls(
            r.dst_nets,
            r.not_dst_nets,
            r.dst_sets,
            r.not_dst_sets,
            r.dst_ports,
            r.not_dst_ports,
            r.dst_named_port_sets,
            r.not_dst_named_port_sets,
        )

"""Support table of the address-management kinds: data only (rules in `tortie.model.support`).

Keys are (record class, attribute). IPPool, IPReservation and IPAMConfiguration are read by
`tortie.ipam`; the bookkeeping kinds (IPAMBlock, BlockAffinity, IPAMHandle) are written by it.
"""

from __future__ import annotations

from typing import Any

from tortie.model import specs_ipam as I
from tortie.model.support import FieldSupport, Rejected, impl, info, reject, unless, warn

SNAP = "bgp.snapshot"

TABLE: dict[tuple[type[Any], str], FieldSupport] = {
    (I.IPPoolSpec, "cidr"): impl("ipam.pools", SNAP, "calc.policy_calc"),
    (I.IPPoolSpec, "vxlan_mode"): impl("calc.vxlan_resolver", "ipam.pools", "node.tunnel_addresses", SNAP),
    (I.IPPoolSpec, "ipip_mode"): unless(("Never",), Rejected(
        "IPIP encapsulation: tortie implements no IPIP (it cannot be tested on a kernel without the ipip "
        "module); use vxlanMode Always or CrossSubnet for an encapsulated pool"),
        "no IPIP: what tortie does"),
    (I.IPPoolSpec, "nat_outgoing"): impl("calc.policy_calc"),
    (I.IPPoolSpec, "disabled"): impl("ipam.pools", SNAP),
    (I.IPPoolSpec, "disable_bgp_export"): impl(SNAP),
    (I.IPPoolSpec, "block_size"): impl("ipam.pools"),
    (I.IPPoolSpec, "node_selector"): impl("ipam.pools"),
    (I.IPPoolSpec, "namespace_selector"): reject(
        "choosing a pool by the workload's namespace; ignoring it would hand this pool's addresses to "
        "workloads of every namespace", not_yet=True),
    (I.IPPoolSpec, "allowed_uses"): impl("ipam.pools"),
    (I.IPPoolSpec, "assignment_mode"): impl("ipam.pools"),
    (I.IPReservationSpec, "reserved_cidrs"): impl("ipam.pools"),
    (I.IPAMConfigurationSpec, "strict_affinity"): impl("ipam.config", "ipam.auto_assign"),
    (I.IPAMConfigurationSpec, "max_blocks_per_host"): impl("ipam.config", "ipam.auto_assign"),
    (I.IPAMConfigurationSpec, "auto_allocate_blocks"): impl("ipam.config", "ipam.auto_assign"),
    (I.IPAMConfigurationSpec, "kube_virt_vm_address_persistence"): warn(
        "tortie runs no KubeVirt integration; VM addresses follow the normal handle rules"),
    (I.IPAMConfigurationSpec, "ip_cooldown_seconds"): impl(
        "ipam.config", "ipam.auto_assign", "ipam.allocator"),
    (I.IPAMBlockSpec, "cidr"): impl("ipam.block_writes"),
    (I.IPAMBlockSpec, "affinity"): impl("ipam.block_writes"),
    (I.IPAMBlockSpec, "affinity_claim_time"): info("kept; tortie IPAM records its own claim time"),
    (I.IPAMBlockSpec, "allocations"): impl("ipam.block_writes"),
    (I.IPAMBlockSpec, "unallocated"): impl("model.ipam_block"),
    (I.IPAMBlockSpec, "attributes"): impl("ipam.block"),
    (I.IPAMBlockSpec, "sequence_number"): impl("model.ipam_block"),
    (I.IPAMBlockSpec, "sequence_number_for_allocation"): impl("model.ipam_block"),
    (I.IPAMBlockSpec, "deleted"): impl("ipam.block_writes"),
    (I.IPAMBlockSpec, "strict_affinity"): info("kept; IPAMConfiguration strictAffinity decides"),
    (I.AllocationAttribute, "handle_id"): impl("ipam.block_writes"),
    (I.AllocationAttribute, "secondary"): impl("ipam.block_writes"),
    (I.AllocationAttribute, "alternate"): info("kept; Calico's KubeVirt bookkeeping"),
    (I.AllocationAttribute, "released_at"): impl("ipam.allocator", "ipam.audit", "ipam.report"),
    (I.BlockAffinitySpec, "state"): impl("ipam.auto_assign"),
    (I.BlockAffinitySpec, "node"): impl("ipam.auto_assign"),
    (I.BlockAffinitySpec, "cidr"): impl("ipam.auto_assign"),
    (I.BlockAffinitySpec, "affinity_type"): info("kept; tortie only makes host affinities"),
    (I.BlockAffinitySpec, "deleted"): impl("ipam.auto_assign"),
    (I.IPAMHandleSpec, "handle_id"): impl("ipam.block_writes"),
    (I.IPAMHandleSpec, "block"): impl("ipam.block_writes"),
    (I.IPAMHandleSpec, "deleted"): impl("ipam.block_writes"),
}

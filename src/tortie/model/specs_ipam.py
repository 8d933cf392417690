"""Specs of the address-management kinds: IPPool, IPReservation, IPAMConfiguration, and the IPAM
bookkeeping objects IPAMBlock, BlockAffinity, IPAMHandle (reference §1.1, §1.2, §5).

IPPool rules (Calico's): the CIDR must be strictly masked and may not overlap the link-local
ranges 169.254.0.0/16 / fe80::/10; blockSize is 20-32 (IPv4) or 116-128 (IPv6) and an enabled pool
must hold at least one block; ipipMode is IPv4-only and IPIP and VXLAN are not both enabled;
allowedUses are Workload, Tunnel, LoadBalancer, and a LoadBalancer pool is LoadBalancer-only, has
no encapsulation, selects all() nodes and does not disable BGP export.

IPAMBlock, BlockAffinity and IPAMHandle are the v3 face of the objects tortie.ipam stores in Calico's
backend form at /calico/ipam/v2/...; the stored form is decoded by `tortie.model.ipam_records` (whose
affinity states these specs share). They are typed (so a corrupted record is caught) but not
cross-checked beyond field types and ranges.
"""

import re
from dataclasses import dataclass
from typing import Annotated

from tortie.common.ipfamily import V6, Family, IPNetwork, family_of
from tortie.model.fields import as_network, cidr_text, selector_text
from tortie.model.frozen import EMPTY_MAP, FrozenMap
from tortie.model.ipam_records import AffinityState
from tortie.model.problems import Issues, join
from tortie.model.schema import Bool, Enum, Int, ListOf, MapOf, Struct, Text, Wire, uses

ENCAP_MODES = ("Never", "Always", "CrossSubnet")
ALLOWED_USES = ("Workload", "Tunnel", "LoadBalancer")
DEFAULT_ALLOWED_USES = ("Workload", "Tunnel")
POOL_CIDR = cidr_text(strict=True)
POOL_SELECTOR = selector_text()


@dataclass(frozen=True, kw_only=True)
class IPPoolSpec:
    cidr: Annotated[str, Wire(POOL_CIDR)]
    vxlan_mode: Annotated[str | None, Wire(Enum(*ENCAP_MODES), "vxlanMode")] = None
    ipip_mode: Annotated[str | None, Wire(Enum(*ENCAP_MODES), "ipipMode")] = None
    nat_outgoing: Annotated[bool | None, Wire(Bool())] = None
    disabled: Annotated[bool | None, Wire(Bool())] = None
    disable_bgp_export: Annotated[bool | None, Wire(Bool(), "disableBGPExport")] = None
    block_size: Annotated[int | None, Wire(Int())] = None
    node_selector: Annotated[str | None, Wire(POOL_SELECTOR)] = None
    namespace_selector: Annotated[str | None, Wire(POOL_SELECTOR)] = None
    allowed_uses: Annotated[tuple[str, ...], Wire(ListOf(Enum(*ALLOWED_USES), unique=True))] = ()
    assignment_mode: Annotated[str | None, Wire(Enum("Automatic", "Manual"))] = None

    @property
    def network(self) -> IPNetwork:
        return as_network(self.cidr)

    @property
    def family(self) -> Family:
        return family_of(self.cidr)

    @property
    def ip_version(self) -> int:
        return self.family.version

    @property
    def effective_block_size(self) -> int:
        return self.block_size if self.block_size is not None else self.family.default_block_size

    @property
    def effective_ipip_mode(self) -> str:
        return self.ipip_mode or "Never"

    @property
    def effective_vxlan_mode(self) -> str:
        return self.vxlan_mode or "Never"

    @property
    def effective_nat_outgoing(self) -> bool:
        return bool(self.nat_outgoing)

    @property
    def effective_disabled(self) -> bool:
        return bool(self.disabled)

    @property
    def effective_disable_bgp_export(self) -> bool:
        return bool(self.disable_bgp_export)

    @property
    def effective_node_selector(self) -> str:
        return self.node_selector or "all()"

    @property
    def effective_namespace_selector(self) -> str:
        return self.namespace_selector or "all()"

    @property
    def effective_allowed_uses(self) -> tuple[str, ...]:
        return self.allowed_uses or DEFAULT_ALLOWED_USES

    @property
    def effective_assignment_mode(self) -> str:
        return self.assignment_mode or "Automatic"


def _check_pool_cidr(spec: IPPoolSpec, path: str, issues: Issues) -> None:
    net = spec.network
    link_local = spec.family.link_local
    if net.overlaps(link_local):
        issues.add(join(path, "cidr"), f"{net} overlaps the link-local range {link_local}")


@uses("cidr", "blockSize", "disabled")
def _check_block_size(spec: IPPoolSpec, path: str, issues: Issues) -> None:
    fam = spec.family
    lo, hi = fam.block_size_range
    size = spec.effective_block_size
    if spec.block_size is not None and not lo <= size <= hi:
        issues.add(join(path, "blockSize"),
                   f"{size} is out of range: {fam.name} block sizes must be {lo}-{hi}")
        return
    if not spec.effective_disabled and spec.network.prefixlen > size:
        issues.add(join(path, "cidr"), f"{spec.cidr} is smaller than one /{size} block: make the pool at "
                   f"least /{size} or use a larger blockSize")


@uses("cidr", "ipipMode", "vxlanMode")
def _check_encap(spec: IPPoolSpec, path: str, issues: Issues) -> None:
    ipip = spec.effective_ipip_mode != "Never"
    vxlan = spec.effective_vxlan_mode != "Never"
    if spec.family is V6 and ipip:
        issues.add(join(path, "ipipMode"), "IPIP is not supported on IPv6 pools: use Never (or VXLAN)")
    if ipip and vxlan:
        issues.add(join(path, "ipipMode"), "IPIP and VXLAN cannot both be enabled on one pool")


@uses("allowedUses", "ipipMode", "vxlanMode", "nodeSelector", "disableBGPExport")
def _check_allowed_uses(spec: IPPoolSpec, path: str, issues: Issues) -> None:
    if "LoadBalancer" not in spec.allowed_uses:
        return
    if len(spec.allowed_uses) > 1:
        issues.add(join(path, "allowedUses"), "LoadBalancer cannot be combined with other uses")
    if spec.effective_ipip_mode != "Never" or spec.effective_vxlan_mode != "Never":
        issues.add(join(path, "allowedUses"), "a LoadBalancer pool cannot use IPIP or VXLAN")
    if spec.effective_node_selector.strip() != "all()":
        issues.add(join(path, "nodeSelector"), "a LoadBalancer pool must select all() nodes")
    if spec.effective_disable_bgp_export:
        issues.add(join(path, "disableBGPExport"), "a LoadBalancer pool cannot disable BGP export")


IPPOOL_SPEC = Struct(IPPoolSpec,
                     checks=[_check_pool_cidr, _check_block_size, _check_encap, _check_allowed_uses],
                     hints={"ipip": "the v1 'ipip' field is replaced by ipipMode",
                            "nat-outgoing": "the v1 field is replaced by natOutgoing"})


@dataclass(frozen=True, kw_only=True)
class IPReservationSpec:
    reserved_cidrs: Annotated[tuple[str, ...], Wire(ListOf(cidr_text()), "reservedCIDRs")] = ()


IPRESERVATION_SPEC = Struct(IPReservationSpec)


@dataclass(frozen=True, kw_only=True)
class IPAMConfigurationSpec:
    strict_affinity: Annotated[bool | None, Wire(Bool())] = None
    max_blocks_per_host: Annotated[int | None, Wire(Int(0, 2**31 - 1))] = None
    auto_allocate_blocks: Annotated[bool | None, Wire(Bool())] = None
    kube_virt_vm_address_persistence: Annotated[
        str | None, Wire(Enum("Enabled", "Disabled"), "kubeVirtVMAddressPersistence")] = None
    ip_cooldown_seconds: Annotated[int | None, Wire(Int(0, 1200), "ipCooldownSeconds")] = None

    @property
    def effective_strict_affinity(self) -> bool:
        return bool(self.strict_affinity)

    @property
    def effective_max_blocks_per_host(self) -> int:
        """0 (or omitted) means the built-in cap of 20 blocks per host."""
        return self.max_blocks_per_host or 20

    @property
    def effective_auto_allocate_blocks(self) -> bool:
        return self.auto_allocate_blocks is not False

    @property
    def effective_ip_cooldown_seconds(self) -> int:
        return self.ip_cooldown_seconds or 0


@uses("strictAffinity", "autoAllocateBlocks")
def _check_ipam_config(spec: IPAMConfigurationSpec, path: str, issues: Issues) -> None:
    # Calico's validator has no rule tying maxBlocksPerHost to strictAffinity (only >= 0).
    if not spec.effective_strict_affinity and not spec.effective_auto_allocate_blocks:
        issues.add(join(path, "autoAllocateBlocks"), "cannot be false unless strictAffinity is true")


IPAM_CONFIGURATION_SPEC = Struct(IPAMConfigurationSpec, checks=[_check_ipam_config])

_AFFINITY_RE = re.compile(r"^(host|virtual):[a-zA-Z0-9._-]+$")


def _check_affinity(text: str) -> str:
    if not _AFFINITY_RE.match(text):
        raise ValueError(f"{text!r} is not a valid affinity: use 'host:<node>' or 'virtual:<name>'")
    return text


@dataclass(frozen=True, kw_only=True)
class AllocationAttribute:
    """Who holds an allocation: the handle id plus owner attributes (namespace, pod, node, ...)."""

    handle_id: Annotated[str | None, Wire(Text(), "handle_id")] = None
    secondary: Annotated[FrozenMap[str, str], Wire(MapOf(Text()))] = EMPTY_MAP
    alternate: Annotated[FrozenMap[str, str], Wire(MapOf(Text()))] = EMPTY_MAP
    released_at: Annotated[str | None, Wire(Text())] = None


@dataclass(frozen=True, kw_only=True)
class IPAMBlockSpec:
    cidr: Annotated[str, Wire(POOL_CIDR)]
    affinity: Annotated[str | None, Wire(Text(_check_affinity))] = None
    affinity_claim_time: Annotated[str | None, Wire(Text())] = None
    allocations: Annotated[tuple[int | None, ...], Wire(ListOf(Int(0), allow_null=True))] = ()
    unallocated: Annotated[tuple[int, ...], Wire(ListOf(Int(0)))] = ()
    attributes: Annotated[tuple[AllocationAttribute, ...], Wire(ListOf(Struct(AllocationAttribute)))] = ()
    sequence_number: Annotated[int | None, Wire(Int(0))] = None
    sequence_number_for_allocation: Annotated[FrozenMap[str, int], Wire(MapOf(Int(0)))] = EMPTY_MAP
    deleted: Annotated[bool | None, Wire(Bool())] = None
    strict_affinity: Annotated[bool | None, Wire(Bool())] = None

    @property
    def network(self) -> IPNetwork:
        return as_network(self.cidr)


IPAM_BLOCK_SPEC = Struct(IPAMBlockSpec)


@dataclass(frozen=True, kw_only=True)
class BlockAffinitySpec:
    state: Annotated[str, Wire(Enum(*(s.value for s in AffinityState)))]
    node: Annotated[str, Wire(Text(non_empty=True))]
    cidr: Annotated[str, Wire(POOL_CIDR)]
    affinity_type: Annotated[str | None, Wire(Enum("host", "virtual"), "type")] = None
    deleted: Annotated[bool | None, Wire(Bool())] = None


BLOCK_AFFINITY_SPEC = Struct(BlockAffinitySpec)


@dataclass(frozen=True, kw_only=True)
class IPAMHandleSpec:
    handle_id: Annotated[str, Wire(Text(non_empty=True), "handleID")]
    block: Annotated[FrozenMap[str, int], Wire(MapOf(Int(0)))] = EMPTY_MAP
    deleted: Annotated[bool | None, Wire(Bool())] = None


IPAM_HANDLE_SPEC = Struct(IPAMHandleSpec)

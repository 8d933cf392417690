"""Names, labels and keys that tie Neutron objects to tortie resources (networking-calico's scheme).

Pure; no Neutron import. Everything the driver writes is recognisable from these names alone, so
resync can tell its own objects from everyone else's:

    WorkloadEndpoint   namespace `openstack` (or `openstack-region-<region>`),
                       name `<host>-openstack-<device_id>-<port_id>` (each '-' inside a part doubled)
    NetworkPolicy      `ossg.default.<sg-id>` in that namespace, selecting `has(<sg label>)`
    IPPool             `openstack-subnet-<subnet-id>`
    Profile            `openstack-port-security-disabled` (allow-all, for ports without port security)
    labels             sg.projectcalico.org/openstack-<sg-id> = <sg name>   (one per security group)
                       sg-name.projectcalico.org/openstack-<sg name> = <sg-id>
                       projectcalico.org/orchestrator = openstack
                       projectcalico.org/openstack-project-id, -project-name, -network-id, -network-name
    election key       /calico/openstack/v2/<region>/neutron_election

Label values are sanitised to Kubernetes label syntax (at most 63 of [A-Za-z0-9-_.], alphanumeric at
both ends); a value that sanitises to nothing is left out.
"""

from __future__ import annotations

import re

ORCHESTRATOR = "openstack"
SG_LABEL_PREFIX = "sg.projectcalico.org/openstack-"
SG_NAME_LABEL_PREFIX = "sg-name.projectcalico.org/openstack-"
ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"
PROJECT_ID_LABEL = "projectcalico.org/openstack-project-id"
PROJECT_NAME_LABEL = "projectcalico.org/openstack-project-name"
NETWORK_ID_LABEL = "projectcalico.org/openstack-network-id"
NETWORK_NAME_LABEL = "projectcalico.org/openstack-network-name"
NETWORK_ID_ANNOTATION = "openstack.projectcalico.org/network-id"
FQDN_ANNOTATION = "openstack.projectcalico.org/fqdn"
POLICY_PREFIX = "ossg.default."
POOL_PREFIX = "openstack-subnet-"
PORT_SECURITY_DISABLED_PROFILE = "openstack-port-security-disabled"
TAP_PREFIX = "tap"
TAP_ID_CHARS = 11  # Nova/libvirt name the tap `tap` + the first 11 characters of the port id

_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
_LABEL_MAX = 63


def namespace(region: str = "") -> str:
    """The namespace of OpenStack endpoints and security-group policies."""
    return f"openstack-region-{region.lower()}" if region else "openstack"


def region_segment(region: str = "") -> str:
    return f"region-{region}" if region else "no-region"


def election_key(region: str = "") -> str:
    return f"/calico/openstack/v2/{region_segment(region)}/neutron_election"


def _double_dashes(part: str) -> str:
    return part.replace("-", "--")


def endpoint_name(host: str, device_id: str, port_id: str) -> str:
    """`<host>-openstack-<device_id>-<port_id>`, dashes inside each part doubled, lower-case."""
    parts = (host.lower(), ORCHESTRATOR, device_id.lower(), port_id.lower())
    return "-".join(_double_dashes(p) for p in parts)


def tap_name(port_id: str) -> str:
    """The host-side interface Nova/libvirt creates for a `tap` VIF."""
    return TAP_PREFIX + port_id[:TAP_ID_CHARS]


def policy_name(sg_id: str) -> str:
    return POLICY_PREFIX + sg_id.lower()


def sg_id_of_policy(name: str) -> str | None:
    return name[len(POLICY_PREFIX):] if name.startswith(POLICY_PREFIX) else None


def pool_name(subnet_id: str) -> str:
    return POOL_PREFIX + subnet_id.lower()


def subnet_id_of_pool(name: str) -> str | None:
    return name[len(POOL_PREFIX):] if name.startswith(POOL_PREFIX) else None


def sg_label(sg_id: str) -> str:
    return SG_LABEL_PREFIX + sg_id


def sg_selector(sg_id: str) -> str:
    """Selector matching the members of security group `sg_id`."""
    return f"has({sg_label(sg_id)})"


def label_value(text: str | None) -> str | None:
    """`text` made into a valid label value (None if nothing is left)."""
    if not text:
        return None
    cleaned = _LABEL_VALUE_BAD.sub("_", text)[:_LABEL_MAX]
    cleaned = cleaned.strip("-_.")
    return cleaned or None


def label_name(text: str | None, prefix: str) -> str | None:
    """A label key `prefix + text` whose name part (after '/') is valid, or None."""
    value = label_value(text)
    if value is None:
        return None
    name_part = prefix.rsplit("/", 1)[1] + value
    name_part = name_part[:_LABEL_MAX].rstrip("-_.")
    return prefix.rsplit("/", 1)[0] + "/" + name_part

"""Cluster-wide settings an OpenStack deployment needs from every tortie agent (pure).

Input: the stored FelixConfiguration `default` (wire dict) or None. Output: the wire dict it
should become, or None when it already fits. The resync writes it (compare-and-swap), as
networking-calico does for Felix (reference §8.2):

* `interfacePrefix` includes `tap` (Nova names VM taps `tap` + 11 characters of the port id);
  prefixes already configured are kept, and when none is configured the agent's built-in default
  is kept too, so containers on the same hosts keep working;
* `endpointReportingEnabled: true`, so that agents write the endpoint status that becomes the
  Neutron port status.

Every other field is left as the operator set it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from tortie.dataplane.interfaces import DEFAULT_INTERFACE_PREFIXES

from networking_tortie.naming import TAP_PREFIX

FELIX_DEFAULT = "default"


def required_felix_config(existing: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if existing is None:
        wire: dict[str, Any] = {
            "apiVersion": "projectcalico.org/v3",
            "kind": "FelixConfiguration",
            "metadata": {"name": FELIX_DEFAULT},
            "spec": {},
        }
    else:
        wire = copy.deepcopy(dict(existing))
        meta = dict(wire.get("metadata") or {})
        for managed in ("uid", "creationTimestamp", "resourceVersion"):
            meta.pop(managed, None)
        wire["metadata"] = meta
    spec = dict(wire.get("spec") or {})
    changed = existing is None
    prefixes = [p.strip() for p in str(spec.get("interfacePrefix") or "").split(",") if p.strip()]
    if not prefixes:
        prefixes = list(DEFAULT_INTERFACE_PREFIXES)
    if TAP_PREFIX not in prefixes:
        spec["interfacePrefix"] = ",".join([*prefixes, TAP_PREFIX])
        changed = True
    if spec.get("endpointReportingEnabled") is not True:
        spec["endpointReportingEnabled"] = True
        changed = True
    wire["spec"] = spec
    return wire if changed else None

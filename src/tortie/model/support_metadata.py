"""Support table of object metadata and KubeControllersConfiguration (rules in `tortie.model.support`).

Keys are (record class, attribute). KubeControllersConfiguration is accepted for compatibility only:
the whole kind draws one warning (`tortie.model.support_notices.KIND_WARNINGS`), so its fields are
listed as warned.
"""

from __future__ import annotations

from typing import Any

from tortie.model import specs_controllers as K
from tortie.model.metadata import Metadata
from tortie.model.support import FieldSupport, impl, info, warn

STORE = "datastore.resources"
SNAP = "bgp.snapshot"

TABLE: dict[tuple[type[Any], str], FieldSupport] = {
    (Metadata, "name"): impl(STORE),
    (Metadata, "namespace"): impl(STORE),
    (Metadata, "labels"): impl("calc.policy_calc", SNAP, "ipam.pools",
                               note="selectable on Nodes, endpoints, network sets; kept on every kind"),
    (Metadata, "annotations"): info("descriptive; Calico does not act on them either"),
    (Metadata, "resource_version"): impl(STORE, note="compare-and-swap precondition"),
    (Metadata, "uid"): impl(STORE, note="set at creation, preserved by updates"),
    (Metadata, "creation_timestamp"): impl(STORE, note="set at creation, preserved by updates"),
    (Metadata, "generation"): impl(STORE, note="1 at creation, +1 whenever the spec changes"),
    **{(cls, name): warn("tortie runs no Kubernetes controllers")
       for cls in (K.KubeControllersConfigurationSpec, K.ControllersConfig, K.NodeControllerConfig,
                   K.ReconcilerConfig, K.AutoHostEndpointConfig, K.LoadBalancerControllerConfig)
       for name in cls.__dataclass_fields__},
}

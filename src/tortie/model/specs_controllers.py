"""Spec of KubeControllersConfiguration (reference §1.14): accepted for compatibility only.

tortie runs no Kubernetes controllers, so the object has no effect; it is validated as Calico does
(enumerations, durations, ports) so that a manifest written for Calico applies unchanged, and every
object draws one warning (`tortie.model.support_notices.KIND_WARNINGS`). Calico's documentation
spells the compaction period `etcdv3CompactionPeriod` while its API field is `etcdV3CompactionPeriod`
(Go's JSON decoding matches either); both spellings are accepted.
"""

from dataclasses import dataclass
from typing import Annotated

from tortie.model.fields import DURATION
from tortie.model.schema import Enum, Int, Struct, Wire

ENABLED_DISABLED = Enum("Enabled", "Disabled")
LOG_LEVELS = Enum("Debug", "Info", "Warning", "Error", "Fatal")
PORT_OR_ZERO = Int(0, 65535)


@dataclass(frozen=True, kw_only=True)
class ReconcilerConfig:
    """The settings shared by the policy, workload endpoint, service account and namespace controllers."""

    reconciler_period: Annotated[str | None, Wire(DURATION)] = None


@dataclass(frozen=True, kw_only=True)
class AutoHostEndpointConfig:
    auto_create: Annotated[str | None, Wire(ENABLED_DISABLED)] = None


@dataclass(frozen=True, kw_only=True)
class NodeControllerConfig:
    reconciler_period: Annotated[str | None, Wire(DURATION)] = None
    sync_labels: Annotated[str | None, Wire(ENABLED_DISABLED)] = None
    host_endpoint: Annotated[AutoHostEndpointConfig | None, Wire(Struct(AutoHostEndpointConfig))] = None
    leak_grace_period: Annotated[str | None, Wire(DURATION)] = None


@dataclass(frozen=True, kw_only=True)
class LoadBalancerControllerConfig:
    assign_ips: Annotated[str | None, Wire(Enum("AllServices", "RequestedServicesOnly"), "assignIPs")] = None


RECONCILER = Struct(ReconcilerConfig)


@dataclass(frozen=True, kw_only=True)
class ControllersConfig:
    node: Annotated[NodeControllerConfig | None, Wire(Struct(NodeControllerConfig))] = None
    policy: Annotated[ReconcilerConfig | None, Wire(RECONCILER)] = None
    workload_endpoint: Annotated[ReconcilerConfig | None, Wire(RECONCILER)] = None
    service_account: Annotated[ReconcilerConfig | None, Wire(RECONCILER)] = None
    namespace: Annotated[ReconcilerConfig | None, Wire(RECONCILER)] = None
    load_balancer: Annotated[
        LoadBalancerControllerConfig | None, Wire(Struct(LoadBalancerControllerConfig))] = None


@dataclass(frozen=True, kw_only=True)
class KubeControllersConfigurationSpec:
    log_severity_screen: Annotated[str | None, Wire(LOG_LEVELS)] = None
    health_checks: Annotated[str | None, Wire(ENABLED_DISABLED)] = None
    etcd_v3_compaction_period: Annotated[str | None, Wire(DURATION, "etcdV3CompactionPeriod")] = None
    etcdv3_compaction_period: Annotated[str | None, Wire(DURATION, "etcdv3CompactionPeriod")] = None
    prometheus_metrics_port: Annotated[int | None, Wire(PORT_OR_ZERO)] = None
    debug_profile_port: Annotated[int | None, Wire(PORT_OR_ZERO)] = None
    controllers: Annotated[ControllersConfig | None, Wire(Struct(ControllersConfig))] = None


KUBE_CONTROLLERS_CONFIGURATION_SPEC = Struct(KubeControllersConfigurationSpec)

"""The agent's configuration: ONE declarative table of parameters, and their resolution from layers.

Every parameter is declared once in `PARAMS` (name, type, default, help, sources). Parsing, the
`tortie agent run` options and docs/reference/agent-config.md (`tortie.agent.config_doc`) all come
from this table.

Layers, lowest to highest precedence (reference §1.7, Felix's order):

    built-in default < FelixConfiguration "default" < FelixConfiguration "node.<hostname>"
        < config file (INI, section [agent]; default /etc/tortie/agent.cfg) < environment TORTIE_<NAME>
        < command line (--hostname, --datastore, --config only)

A parameter only takes values from the sources it declares (e.g. the datastore URL cannot come from
the datastore). Names: snake_case in the table, the file and (upper-cased) the environment; the
FelixConfiguration spec uses Felix's camelCase field (`routeRefreshInterval`). File keys may also be
written camelCase. An unknown name or an invalid value is reported as a `ConfigProblem` (and logged
as a warning by the caller) and the next lower layer's value, finally the default, is used.

`resolve(layers)` is pure; `read_file_layer` and `env_layer` do the I/O. The effective values are a
plain dict name -> typed value (see `tortie.agent.config_types`), which calc sends to the dataplane
as `ConfigUpdate.values`.
"""

from __future__ import annotations

import configparser
import enum
import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tortie.agent.config_types import (
    ParamType,
    bool_type,
    duration_type,
    enum_type,
    int_type,
    list_type,
    mtu_type,
    regex_type,
    string_type,
)
from tortie.agent.policy_params import (
    FAILSAFE_INBOUND_DEFAULT,
    FAILSAFE_OUTBOUND_DEFAULT,
    WORKLOAD_TO_HOST_ALLOW_DEFAULT,
    failsafe_ports_type,
)
from tortie.dataplane.endpoint_status import DEFAULT_PREFIX as DEFAULT_STATUS_PREFIX

log = logging.getLogger(__name__)

DEFAULT_CONFIG_FILE = "/etc/tortie/agent.cfg"
ENV_PREFIX = "TORTIE_"
FILE_SECTION = "agent"


class Source(enum.Enum):
    """Where a parameter may come from."""

    DATASTORE = "datastore"  # FelixConfiguration default and node.<hostname>
    FILE = "file"
    ENV = "env"
    CLI = "cli"


_ALL = frozenset({Source.DATASTORE, Source.FILE, Source.ENV})
_LOCAL = frozenset({Source.FILE, Source.ENV, Source.CLI})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass(frozen=True)
class Param:
    name: str
    type: ParamType
    default: object
    help: str
    sources: frozenset[Source] = _ALL
    default_factory: Callable[[], object] | None = None
    default_doc: str | None = None  # how the docs show a computed default
    live: bool = False  # a change after start applies without restarting the agent
    cli_option: str | None = None  # `tortie agent run` option when not --<name-with-dashes>
    felix: str | None = None  # FelixConfiguration field when Felix's spelling is not the camelCase name

    @property
    def env_name(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def felix_name(self) -> str:
        return self.felix or _camel(self.name)

    @property
    def cli_flag(self) -> str:
        return self.cli_option or "--" + self.name.replace("_", "-")

    def default_value(self) -> object:
        return self.default_factory() if self.default_factory is not None else self.default


_IFACE_PREFIX = r"[A-Za-z0-9_.-]{1,14}"

# fmt: off
PARAMS: tuple[Param, ...] = (
    Param("hostname", string_type(), "", "Name of this host: WorkloadEndpoints with spec.node equal to it "
          "are local; also selects FelixConfiguration node.<hostname>.", _LOCAL,
          default_factory=socket.gethostname, default_doc="the OS host name"),
    Param("datastore", string_type(), "", "Datastore URL (sqlite:///path.db or etcd://host:port,...); empty "
          "means the embedded default.", _LOCAL, default_doc="embedded default"),
    Param("config_file", string_type(), DEFAULT_CONFIG_FILE, "INI file with an [agent] section of these "
          "parameters; a missing default file is not an error.", frozenset({Source.ENV, Source.CLI}),
          cli_option="--config"),
    Param("interface_prefix", list_type(_IFACE_PREFIX), ("tort",), "Prefixes of workload interfaces; only "
          "interfaces with one of them are ever touched."),
    Param("device_route_protocol", int_type(1, 255), 77, "Route protocol number on every route the agent "
          "programs; it recognises its own routes by it."),
    Param("route_refresh_interval", duration_type(), 90.0, "Period of the full route read-back and repair "
          "(0 disables)."),
    Param("interface_refresh_interval", duration_type(), 90.0, "Period of the full interface and sysctl "
          "rescan (0 disables)."),
    Param("ip_forwarding", enum_type(("Enabled", "Disabled")), "Enabled", "Set the host's ip_forward "
          "sysctls (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding)."),
    Param("ipv6_support", bool_type(), True, "Program IPv6 routes and sysctls."),
    Param("health_enabled", bool_type(), False, "Serve /liveness and /readiness over HTTP."),
    Param("health_host", string_type(), "localhost", "Address the health server listens on."),
    Param("health_port", int_type(0, 65535), 9099, "Port of the health server (0 picks a free port)."),
    Param("prometheus_metrics_enabled", bool_type(), False, "Serve Prometheus metrics at /metrics."),
    Param("prometheus_metrics_host", string_type(), "localhost", "Address the metrics server listens "
          "on (loopback unless configured; empty: all addresses)."),
    Param("prometheus_metrics_port", int_type(0, 65535), 9091, "Port of the metrics server."),
    Param("log_severity_screen", enum_type(("Debug", "Info", "Warning", "Error", "Fatal")), "Info",
          "Lowest severity logged to stderr.", live=True),
    Param("endpoint_reporting_enabled", bool_type(), False, "Write each local endpoint's status (up/down) "
          "to the datastore."),
    Param("endpoint_reporting_delay", duration_type(), 1.0, "Minimum delay between endpoint status writes "
          "(coalesces flaps)."),
    Param("reporting_interval", duration_type(), 30.0, "Period of the agent's liveness report in the "
          "datastore (0 disables)."),
    Param("reporting_ttl", duration_type(), 90.0, "Lease TTL of the liveness report."),
    Param("openstack_region", string_type(), "", "Region of the status keys (no-region when empty)."),
    Param("endpoint_status_path_prefix", string_type(), DEFAULT_STATUS_PREFIX, "Directory under which the "
          "agent keeps endpoint-status/<namespace> <name> for every local endpoint whose routes and policy "
          "are programmed (what the CNI plugin waits for before ADD returns; its endpoint_status_dir is "
          "this plus /endpoint-status); empty: no files."),
    # -- security policy (issue 5; docs/design/policy.md) --
    Param("policy_enabled", bool_type(), True, "Enforce network policy with nftables (table inet tortie). "
          "When false the agent only routes and never touches nftables."),
    Param("failsafe_inbound_host_ports", failsafe_ports_type(), FAILSAFE_INBOUND_DEFAULT, "Ports always "
          "allowed into the host through host endpoints, whatever the policy (protocol:port, or "
          "protocol:cidr:port for one peer network)."),
    Param("failsafe_outbound_host_ports", failsafe_ports_type(), FAILSAFE_OUTBOUND_DEFAULT, "Ports always "
          "allowed out of the host through host endpoints, whatever the policy."),
    Param("default_endpoint_to_host_action", enum_type(("Drop", "Accept", "Return")), "Drop", "Verdict for "
          "workload-to-host traffic after the workload's egress policy allowed it (Return: let the host's "
          "own firewall decide)."),
    Param("workload_to_host_allow", failsafe_ports_type(), WORKLOAD_TO_HOST_ALLOW_DEFAULT, "Ports of this "
          "host that workloads always reach, before their egress policy and anti-spoofing (Felix's "
          "OpenStack special cases: DHCP, DHCPv6, DNS); empty: workload-to-host traffic is policed like "
          "any other."),
    Param("log_prefix", string_type(), "tortie-packet", "Prefix of kernel log lines written by Log rules."),
    # -- flow logs (issue 20; docs/design/flows.md) --
    Param("flow_logs_enabled", bool_type(), True, "Record flows with their policy verdicts (policy rules "
          "log to NFLOG groups 1 and 2; conntrack counts bytes) into the local flow store.", _LOCAL),
    Param("flow_logs_flush_interval", duration_type(), 15.0, "Aggregation interval of flow records: one "
          "record per flow and interval is written at its end."),
    Param("flow_logs_dir", string_type(), "/var/log/tortie/flows", "Directory of the local flow store "
          "(JSON lines, rotated).", _LOCAL),
    Param("flow_logs_max_bytes", int_type(65536, 2**40), 64 << 20, "Size cap of the local flow store "
          "(the oldest records go first).", _LOCAL),
    Param("flow_logs_deny_rate", int_type(1, 1_000_000), 100, "Denied packets per second each deny rule "
          "logs, at most (the drop itself is never limited).", _LOCAL),
    # -- encapsulation and MTU (issue 16; docs/design/dataplane.md) --
    Param("vxlan_vni", int_type(0, 16777215), 4096, "VXLAN network identifier of the tunnel devices "
          "(vxlan.calico, vxlan-v6.calico); every host must use the same.", felix="vxlanVNI"),
    Param("vxlan_port", int_type(1, 65535), 4789, "UDP port of VXLAN; every host must use the same."),
    Param("vxlan_mtu", mtu_type(68), 0, "MTU of the IPv4 VXLAN device and of workloads while an IPv4 pool "
          "uses VXLAN; 0: the uplink's MTU - 50.", felix="vxlanMTU"),
    Param("vxlan_mtu_v6", mtu_type(1280), 0, "MTU of the IPv6 VXLAN device; 0: the uplink's MTU - 70.",
          felix="vxlanMTUV6"),
    Param("mtu_iface_pattern", regex_type(), "", "Interfaces whose smallest MTU is the uplink MTU (a regex "
          "searched in the name); empty: the interface holding this host's Node address."),
    Param("allow_vxlan_packets_from_workloads", bool_type(), False, "Let workloads send VXLAN packets (UDP "
          "to vxlan_port); by default they are dropped before their egress policy.",
          felix="allowVXLANPacketsFromWorkloads"),
    Param("mtu_file", string_type(), "", "Where the workload MTU is published for the CNI plugin (its "
          "mtu_file) and the DHCP service, with an explanation in <mtu_file>.json; empty: not written. "
          "`tortie node run` passes its --mtu-file (default /var/lib/tortie/mtu).", _LOCAL),
)
# fmt: on

PARAMS_BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}
_BY_FOLDED: dict[str, Param] = {p.name.replace("_", "").lower(): p for p in PARAMS}


def lookup(name: str) -> Param | None:
    """Find a parameter by snake_case or camelCase name, case-insensitively."""
    return PARAMS_BY_NAME.get(name) or _BY_FOLDED.get(name.replace("_", "").replace("-", "").lower())


@dataclass(frozen=True)
class ConfigProblem:
    source: str
    name: str
    message: str

    def __str__(self) -> str:
        return f"config {self.source}: {self.name}: {self.message}"


@dataclass(frozen=True)
class Layer:
    """Raw values of one source, keyed by parameter name (unknown names already reported)."""

    source: Source
    label: str  # "FelixConfiguration default", "file /etc/tortie/agent.cfg", ...
    values: Mapping[str, object]
    problems: tuple[ConfigProblem, ...] = ()


@dataclass(frozen=True)
class ResolvedConfig:
    values: dict[str, Any]
    origin: dict[str, str]  # name -> label of the layer that set it ("default" if none)
    problems: tuple[ConfigProblem, ...] = field(default=())

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


def _named_layer(source: Source, label: str, raw: Iterable[tuple[str, object]]) -> Layer:
    values: dict[str, object] = {}
    problems: list[ConfigProblem] = []
    for name, value in raw:
        param = lookup(name)
        if param is None:
            problems.append(ConfigProblem(label, name, "unknown parameter, ignored"))
        elif source not in param.sources:
            problems.append(ConfigProblem(label, name, f"cannot be set from {source.value}, ignored"))
        else:
            values[param.name] = value
    return Layer(source, label, values, tuple(problems))


def felix_layer(name: str, spec: Mapping[str, Any] | None) -> Layer:
    """The values of FelixConfiguration `name` (its wire spec). Felix fields tortie does not
    implement are reported as unknown."""
    label = f"FelixConfiguration {name}"
    return _named_layer(Source.DATASTORE, label, (spec or {}).items())


def file_layer_from_text(text: str, label: str) -> Layer:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=label)
    except configparser.Error as exc:
        return Layer(Source.FILE, label, {}, (ConfigProblem(label, "-", f"unreadable: {exc}"),))
    problems = [ConfigProblem(label, f"[{s}]", "unknown section, ignored") for s in parser.sections()
                if s != FILE_SECTION]
    raw = parser.items(FILE_SECTION) if parser.has_section(FILE_SECTION) else []
    layer = _named_layer(Source.FILE, label, raw)
    return Layer(layer.source, label, layer.values, (*problems, *layer.problems))


def read_file_layer(path: str, *, required: bool) -> Layer:
    """Read the config file. A missing file is a problem only when `required` (named explicitly)."""
    label = f"file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        problems = (ConfigProblem(label, "-", "file not found"),) if required else ()
        return Layer(Source.FILE, label, {}, problems)
    except OSError as exc:
        return Layer(Source.FILE, label, {}, (ConfigProblem(label, "-", f"unreadable: {exc}"),))
    return file_layer_from_text(text, label)


def env_layer(environ: Mapping[str, str] | None = None) -> Layer:
    """Parameters from TORTIE_<NAME> variables. Other TORTIE_* variables belong to other tortie
    commands and are ignored."""
    env = os.environ if environ is None else environ
    values = {p.name: env[p.env_name] for p in PARAMS if Source.ENV in p.sources and p.env_name in env}
    return Layer(Source.ENV, "environment", values)


def cli_layer(values: Mapping[str, object | None]) -> Layer:
    """Command-line options; None means the option was not given."""
    return _named_layer(Source.CLI, "command line", ((k, v) for k, v in values.items() if v is not None))


def resolve(layers: Iterable[Layer]) -> ResolvedConfig:
    """Effective values: each parameter from the highest layer holding a valid value, else its default.
    Pure apart from `default_factory` (the OS host name)."""
    ordered = list(layers)
    problems: list[ConfigProblem] = [p for layer in ordered for p in layer.problems]
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for param in PARAMS:
        values[param.name] = param.default_value()
        origin[param.name] = "default"
        for layer in ordered:
            if param.name not in layer.values:
                continue
            try:
                values[param.name] = param.type.parse(layer.values[param.name])
                origin[param.name] = layer.label
            except ValueError as exc:
                reason = f"{exc}; using the lower layer's value"
                problems.append(ConfigProblem(layer.label, param.name, reason))
    return ResolvedConfig(values, origin, tuple(problems))


@dataclass(frozen=True)
class LocalConfig:
    """The layers read once at start (file, environment, command line)."""

    file: Layer
    env: Layer
    cli: Layer

    def resolve(self, felix_default: Mapping[str, Any] | None = None,
                felix_node: Mapping[str, Any] | None = None, hostname: str | None = None) -> ResolvedConfig:
        host = hostname or "<hostname>"
        return resolve([felix_layer("default", felix_default), felix_layer(f"node.{host}", felix_node),
                        self.file, self.env, self.cli])


def load_local(
    cli_values: Mapping[str, object | None], environ: Mapping[str, str] | None = None
) -> LocalConfig:
    """Read the environment, the command line and the config file they name."""
    env = env_layer(environ)
    cli = cli_layer(cli_values)
    path_layer = resolve([env, cli])
    path = str(path_layer.values["config_file"])
    explicit = path_layer.origin["config_file"] != "default"
    return LocalConfig(read_file_layer(path, required=explicit), env, cli)


class ProblemReporter:
    """Logs each distinct configuration problem once (resolution reruns on every FelixConfiguration
    change; repeating the same warning would drown the log)."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._seen: set[ConfigProblem] = set()
        self._log = logger

    def report(self, problems: Iterable[ConfigProblem]) -> None:
        for problem in problems:
            if problem not in self._seen:
                self._seen.add(problem)
                self._log.warning("config problem source=%r param=%s reason=%r",
                                  problem.source, problem.name, problem.message)


def datastore_resolver(
    local: LocalConfig, hostname: str, reporter: ProblemReporter | None = None,
    on_invalid: Callable[[frozenset[str]], None] | None = None,
) -> Callable[[Mapping[str, Any] | None, Mapping[str, Any] | None], dict[str, Any]]:
    """The merge function calc's ConfigCalc calls with the FelixConfiguration `default` and
    `node.<hostname>` specs: the full effective configuration, problems reported once each.
    `on_invalid(names)` hears, on every resolution, which parameters had an invalid value somewhere
    (the running agent keeps its own value of those: `tortie.agent.pipeline`)."""

    def resolve_specs(default: Mapping[str, Any] | None, node: Mapping[str, Any] | None) -> dict[str, Any]:
        resolved = local.resolve(default, node, hostname)
        if reporter is not None:
            reporter.report(resolved.problems)
        if on_invalid is not None:
            on_invalid(frozenset(p.name for p in resolved.problems if p.name in PARAMS_BY_NAME))
        return resolved.values

    return resolve_specs

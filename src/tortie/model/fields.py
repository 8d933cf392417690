"""Primitive field validators of the projectcalico.org/v3 model and the codecs built on them.

Each `check_*` / `parse_*` function takes one raw value and returns its canonical form or raises
ValueError with a message that says what is wrong and what is allowed (TypeError for a value of
the wrong JSON type). The codecs at the bottom wrap them for use in record annotations.

Canonical forms (what `to_wire()` emits):
* CIDRs: `ipaddress` text (`10.0.0.0/8`, `fd00::/64`); a bare address becomes /32 or /128.
  Pool-like CIDRs must be strictly masked (error otherwise, as in Calico); rule/set nets with host
  bits set are masked (tortie is more lenient than Calico here, see docs/reference/resources.md).
* IP addresses: `ipaddress` text (lower-case, compressed IPv6).
* Ports: an integer for one port, `"min:max"` for a range, the name for a named port.
* Protocols: Calico's spelling (`TCP`, `UDP`, `ICMP`, `ICMPv6`, `SCTP`, `UDPLite`) whatever the
  input case, or an integer 1-255.
* AS numbers: an integer (input may be an integer, `"64512"` or asdot `"1.10"`).
* MAC addresses: lower-case, colon-separated.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from tortie.common.ipfamily import V4, V6, Family, IPAddress, IPNetwork, parse_address, parse_network
from tortie.model.schema import Converted, Int, Text

# -- names ------------------------------------------------------------------------------------------
DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = DNS1123_LABEL + r"(\." + DNS1123_LABEL + r")*"
_LABEL_RE = re.compile(f"^{DNS1123_LABEL}$")
_SUBDOMAIN_RE = re.compile(f"^{DNS1123_SUBDOMAIN}$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class _TextRule:
    """A length limit and a pattern, with messages that say what is allowed. The messages are
    formatted with `value` (the text checked), `n` (its length) and the caller's `context`."""

    max_len: int
    pattern: re.Pattern[str]
    too_long: str
    invalid: str

    def check(self, value: str, **context: str) -> str:
        if len(value) > self.max_len:
            raise ValueError(self.too_long.format(value=value, n=len(value), **context))
        if not self.pattern.match(value):
            raise ValueError(self.invalid.format(value=value, **context))
        return value


_DNS_LABEL_RULE = _TextRule(
    63, _LABEL_RE, "{value!r} is too long ({n} characters; a DNS-1123 label has at most 63)",
    "{value!r} is not a valid name: use lower-case letters, digits and '-', "
    "starting and ending with a letter or digit")
_DNS_SUBDOMAIN_RULE = _TextRule(
    253, _SUBDOMAIN_RE, "name is too long ({n} characters; at most 253)",
    "{value!r} is not a valid name: use lower-case letters, digits, '-' and '.', "
    "starting and ending with a letter or digit")
_LABEL_KEY_NAME_RULE = _TextRule(
    63, _QUALIFIED_NAME_RE, "label key {key!r}: name part is {n} characters; at most 63",
    "label key {key!r} is not valid: use letters, digits, '-', '_' and '.', "
    "starting and ending with a letter or digit")
_LABEL_VALUE_RULE = _TextRule(
    63, _LABEL_VALUE_RE, "label value {value!r} is {n} characters; at most 63",
    "label value {value!r} is not valid: use letters, digits, '-', '_' and '.', "
    "starting and ending with a letter or digit (or leave it empty)")


def check_dns_label(name: str) -> str:
    """A DNS-1123 label: at most 63 of [a-z0-9-], alphanumeric at both ends."""
    return _DNS_LABEL_RULE.check(name)


def check_dns_subdomain(name: str) -> str:
    """A DNS-1123 subdomain: dot-separated labels, at most 253 characters."""
    return _DNS_SUBDOMAIN_RULE.check(name)


def check_label_key(key: str) -> str:
    """A Kubernetes qualified name: optional `<DNS subdomain>/` prefix, then a name of at most 63
    of [A-Za-z0-9_.-] with alphanumerics at both ends."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            raise ValueError(f"label key {key!r} has an empty prefix before '/'")
        try:
            check_dns_subdomain(prefix)
        except ValueError:
            raise ValueError(f"label key {key!r}: prefix {prefix!r} must be a DNS subdomain "
                             "(lower-case letters, digits, '-' and '.')") from None
    if not name:
        raise ValueError(f"label key {key!r} has an empty name")
    _LABEL_KEY_NAME_RULE.check(name, key=key)
    return key


def check_label_value(value: str) -> str:
    """A Kubernetes label value: empty, or at most 63 of [A-Za-z0-9_.-], alphanumeric at both ends."""
    return _LABEL_VALUE_RULE.check(value)


def check_annotation_key(key: str) -> str:
    """Annotation keys follow the label-key rules, checked case-insensitively (as Calico does)."""
    try:
        check_label_key(key.lower())
    except ValueError as exc:
        raise ValueError(str(exc).replace("label key", "annotation key")) from None
    return key


# -- addresses --------------------------------------------------------------------------------------
def cidr_text(strict: bool = False, family: Family | None = None) -> Text:
    """Codec: a CIDR string in canonical form."""
    return Text(lambda t: str(parse_network(t, strict=strict, family=family)))


def ip_text(family: Family | None = None) -> Text:
    """Codec: an IP address string in canonical form."""
    return Text(lambda t: str(parse_address(t, family)))


def parse_ip_with_prefix(text: str, family: Family) -> str:
    """A host address optionally followed by its subnet's prefix length (`10.0.0.5/24`), as used by
    Node.spec.bgp.ipv4Address; canonical text keeps the host bits."""
    addr_text, slash, plen = text.partition("/")
    addr = family.address(addr_text)
    if not slash:
        return str(addr)
    if not plen.isdigit() or int(plen) > addr.max_prefixlen:
        raise ValueError(f"{text!r} has an invalid prefix length (must be 0-{addr.max_prefixlen})")
    return f"{addr}/{int(plen)}"


_BRACKETED_PEER_RE = re.compile(r"^\[([^\]]+)\]:(\d+)$")


def _split_peer(text: str) -> tuple[str, str | None, Family | None]:
    """(address text, port text or None, the family the form implies): `[<ipv6>]:<port>` is IPv6,
    `<ipv4>:<port>` (exactly one ':') IPv4, anything else a bare address of either family."""
    m = _BRACKETED_PEER_RE.match(text)
    if m:
        return m.group(1), m.group(2), V6
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, port, V4
    return text, None, None


def parse_peer_ip(text: str) -> str:
    """`<ip>`, `<ipv4>:<port>` or `[<ipv6>]:<port>` with port 1-65535; canonical address text."""
    host, port, fam = _split_peer(text)
    if port is None or fam is None:
        return str(parse_address(text))
    addr = fam.address(host)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: port must be 1-65535")
    return f"{fam.bracketed(addr)}:{int(port)}"


def peer_address(text: str) -> tuple[IPAddress, int | None]:
    """Split a canonical peerIP into (address, port or None)."""
    host, port, _fam = _split_peer(text)
    return ipaddress.ip_address(host), int(port) if port is not None else None


_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")


def parse_mac(text: str) -> str:
    """An EUI-48 MAC address with ':' or '-' separators; canonical lower-case with ':'."""
    if not _MAC_RE.match(text):
        raise ValueError(f"{text!r} is not a valid MAC address: expected six hex pairs (ee:ee:ee:ee:ee:ee)")
    return text.lower().replace("-", ":")


_IFACE_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")


def check_interface_name(name: str) -> str:
    if not _IFACE_RE.match(name):
        raise ValueError(f"{name!r} is not a valid interface name (1-15 of letters, digits, '_', '.', '-')")
    return name


def check_regex(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"{text!r} is not a valid regular expression: {exc}") from None
    return text


# -- ports and protocols ----------------------------------------------------------------------------
_PORT_NAME_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,128}$")


@dataclass(frozen=True)
class Port:
    """A rule port: one number (`min_port == max_port`), a range, or a named port (`name` set,
    numbers 0)."""

    min_port: int = 0
    max_port: int = 0
    name: str | None = None

    @classmethod
    def single(cls, port: int) -> Port:
        return cls(port, port)

    @classmethod
    def range(cls, lo: int, hi: int) -> Port:
        return cls(lo, hi)

    @classmethod
    def named(cls, name: str) -> Port:
        return cls(0, 0, name)

    @property
    def is_named(self) -> bool:
        return self.name is not None

    def __str__(self) -> str:
        if self.name is not None:
            return self.name
        return str(self.min_port) if self.min_port == self.max_port else f"{self.min_port}:{self.max_port}"


def _port_number(text: str, whole: object) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{whole!r} is not a valid port: port numbers must be 1-65535")
    return int(text)


def parse_port(raw: object) -> Port:
    """An int 1-65535, `"min:max"` (1 <= min <= max <= 65535), a numeric string, or a port name
    (1-128 of letters, digits, '_', '.', '-')."""
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise TypeError(raw)
    if isinstance(raw, int):
        if not 1 <= raw <= 65535:
            raise ValueError(f"{raw} is not a valid port: port numbers must be 1-65535")
        return Port.single(raw)
    if ":" in raw:
        lo_text, _, hi_text = raw.partition(":")
        lo, hi = _port_number(lo_text, raw), _port_number(hi_text, raw)
        if lo > hi:
            raise ValueError(f"{raw!r} is not a valid port range: the first port must not exceed the second")
        return Port.range(lo, hi)
    if raw.isdigit():
        return Port.single(_port_number(raw, raw))
    if not _PORT_NAME_RE.match(raw):
        raise ValueError(f"{raw!r} is not a valid port: use a number, 'min:max' or a port name "
                         "(1-128 of letters, digits, '_', '.', '-')")
    return Port.named(raw)


def dump_port(port: Port) -> int | str:
    if port.name is not None:
        return port.name
    return port.min_port if port.min_port == port.max_port else f"{port.min_port}:{port.max_port}"


def numeric_port(raw: object) -> Port:
    port = parse_port(raw)
    if port.is_named:
        raise ValueError(f"{raw!r} is not valid here: only port numbers or 'min:max' ranges are allowed")
    return port


PORT = Converted(parse_port, dump_port, "a port (number, 'min:max' or name)")
NUMERIC_PORT = Converted(numeric_port, dump_port, "a port number or 'min:max' range")

PROTOCOL_NUMBERS = {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMPv6": 58, "SCTP": 132, "UDPLite": 136}
_PROTOCOL_BY_FOLDED = {name.lower(): name for name in PROTOCOL_NUMBERS}
_PORT_PROTOCOLS = frozenset({6, 17, 132})


@dataclass(frozen=True)
class ProtocolValue:
    """A rule/endpoint protocol: a Calico protocol name or an IP protocol number 1-255."""

    value: str | int

    @property
    def number(self) -> int:
        return self.value if isinstance(self.value, int) else PROTOCOL_NUMBERS[self.value]

    @property
    def name(self) -> str | None:
        return self.value if isinstance(self.value, str) else None

    @property
    def supports_ports(self) -> bool:
        """TCP, UDP and SCTP (by name or number) carry ports."""
        return self.number in _PORT_PROTOCOLS

    @property
    def is_icmp(self) -> bool:
        return self.number == 1

    @property
    def is_icmpv6(self) -> bool:
        return self.number == 58

    def __str__(self) -> str:
        return str(self.value)


def parse_protocol(raw: object) -> ProtocolValue:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise TypeError(raw)
    if isinstance(raw, str) and raw.isdigit():
        raw = int(raw)
    if isinstance(raw, int):
        if not 1 <= raw <= 255:
            raise ValueError(f"{raw} is not a valid protocol number: must be 1-255")
        return ProtocolValue(raw)
    name = _PROTOCOL_BY_FOLDED.get(raw.lower())
    if name is None:
        raise ValueError(f"{raw!r} is not a valid protocol: use one of {', '.join(PROTOCOL_NUMBERS)} "
                         "or a number 1-255")
    return ProtocolValue(name)


PROTOCOL = Converted(parse_protocol, lambda p: p.value, "a protocol name or number")

# -- AS numbers, communities, durations -----------------------------------------------------------
_ASDOT_RE = re.compile(r"^(\d+)\.(\d+)$")


def parse_as_number(raw: object) -> int:
    """Plain 0-4294967295 (integer or string) or asdot `"<high>.<low>"` with each half 0-65535."""
    if isinstance(raw, bool) or not isinstance(raw, int | str | float):
        raise TypeError(raw)
    if isinstance(raw, float):
        raise ValueError(f"{raw} is not a valid AS number: write asdot numbers as a quoted string "
                         "(e.g. '1.10'), since YAML reads 1.10 as the decimal number 1.1")
    if isinstance(raw, str):
        m = _ASDOT_RE.match(raw)
        if m:
            high, low = int(m.group(1)), int(m.group(2))
            if high > 65535 or low > 65535:
                raise ValueError(f"{raw!r} is not a valid asdot AS number: each half must be 0-65535")
            return high * 65536 + low
        if not raw.isdigit():
            raise ValueError(f"{raw!r} is not a valid AS number: use 0-4294967295 or asdot like '1.10'")
        raw = int(raw)
    if not 0 <= raw <= 4294967295:
        raise ValueError(f"{raw} is out of range: AS numbers must be 0-4294967295")
    return raw


AS_NUMBER = Converted(parse_as_number, lambda n: n, "an AS number")

_STANDARD_COMMUNITY = re.compile(r"^(\d+):(\d+)$")
_LARGE_COMMUNITY = re.compile(r"^(\d+):(\d+):(\d+)$")


def is_community_value(text: str) -> bool:
    """`aa:nn` with 16-bit parts (standard) or `aa:nn:mm` with 32-bit parts (large, RFC 8092)."""
    m = _STANDARD_COMMUNITY.match(text)
    if m:
        return all(int(p) <= 0xFFFF for p in m.groups())
    m = _LARGE_COMMUNITY.match(text)
    if m:
        return all(int(p) <= 0xFFFFFFFF for p in m.groups())
    return False


def check_community_value(text: str) -> str:
    if not is_community_value(text):
        raise ValueError(f"{text!r} is not a valid community: use 'aa:nn' (each part 0-65535) or "
                         "'aa:nn:mm' (each part 0-4294967295)")
    return text


_DURATION_RE = re.compile(r"^(\d+(\.\d+)?(ms|s|m|h))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def check_duration(text: str) -> str:
    """A Go-style duration as Calico's v3 API accepts it: e.g. `90s`, `1m30s`, `500ms`, `1.5h`, `0`."""
    if text != "0" and not _DURATION_RE.match(text):
        raise ValueError(f"{text!r} is not a valid duration: use a number with a unit, e.g. '90s', '5m', "
                         "'500ms', '1h30m'")
    return text


def duration_seconds(text: str) -> float:
    """Seconds in a duration accepted by `check_duration`."""
    if text == "0":
        return 0.0
    parts = re.findall(r"(\d+(\.\d+)?)(ms|s|m|h)", text)
    return sum(float(num) * _UNIT_SECONDS[unit] for num, _, unit in parts)


def parse_duration(raw: object) -> str:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        raise ValueError(f"{raw} is not a valid duration: write it with a unit, e.g. '{raw}s'")
    if not isinstance(raw, str):
        raise TypeError(raw)
    return check_duration(raw)


DURATION = Converted(parse_duration, lambda d: d, "a duration such as '90s'")
PORT_NUMBER = Int(1, 65535, hint="port numbers must be 1-65535")

# -- selectors ---------------------------------------------------------------------------------------
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
_GLOBAL_CALL = re.compile(r"(?<![A-Za-z0-9_./-])global\(")


def uses_global(selector: str) -> bool:
    """Whether the selector calls `global()` (outside string literals)."""
    return bool(_GLOBAL_CALL.search(_QUOTED.sub('""', selector)))


def is_only_global(selector: str) -> bool:
    return re.fullmatch(r"\s*global\(\s*\)\s*", selector) is not None


def check_selector(text: str, *, allow_global: bool = False) -> str:
    """Parse with tortie.selector; `global()` is rejected unless `allow_global` (then it must be
    the entire expression)."""
    from tortie.selector import SelectorError, parse  # here: most objects carry no selector (CNI start-up)

    try:
        parse(text)
    except SelectorError as exc:
        raise ValueError(f"invalid selector {text!r}: {exc.reason} at position {exc.position}") from None
    if uses_global(text):
        if not allow_global:
            raise ValueError(f"invalid selector {text!r}: global() is only valid in a rule namespaceSelector")
        if not is_only_global(text):
            raise ValueError(f"invalid selector {text!r}: global() cannot be combined with other expressions")
    return text


def selector_text(*, allow_global: bool = False, max_len: int | None = None) -> Text:
    return Text(lambda t: check_selector(t, allow_global=allow_global), max_len=max_len)


SELECTOR = selector_text()
NAMESPACE_SELECTOR_IN_RULE = selector_text(allow_global=True)

# -- generic helpers for record annotations ----------------------------------------------------------
NAME = Text(check_dns_subdomain)
LABEL_NAME = Text(check_dns_label)
INTERFACE_NAME = Text(check_interface_name)
REGEX = Text(check_regex)
MAC = Text(parse_mac)


def as_network(text: str) -> IPNetwork:
    """The ipaddress network of a canonical CIDR string."""
    return ipaddress.ip_network(text)



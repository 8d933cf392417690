"""The CNI calling convention, shared by the `tortie` and `tortie-ipam` executables.

    runtime --(env CNI_*, stdin netconf JSON)--> run() --> verb handler --> stdout JSON, exit code

Inputs: an environment mapping and the stdin bytes. Outputs: (exit code, stdout text). On success ADD
prints the result in the config's cniVersion, VERSION prints the supported versions, the other verbs
print nothing; on failure the error object `{"cniVersion", "code", "msg", "details"}` is printed and
the exit code is 1. Parsing happens in this order — environment, stdin JSON, cniVersion, fields — and
before any side effect, so a bad call changes nothing.

Logging goes to `log_file_path` when configured, else to stderr (never stdout, which belongs to the
protocol), at `log_level` (default warning).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from tortie.cni.errors import INCOMPATIBLE_VERSION, CniError, classify
from tortie.cni.netconf import (
    LATEST_VERSION,
    SUPPORTED_VERSIONS,
    NetConf,
    load_json,
    parse_netconf,
    version_tuple,
)
from tortie.cni.request import CniRequest, parse_request
from tortie.cni.result import CniResult

log = logging.getLogger(__name__)

Handler = Callable[[CniRequest, NetConf], CniResult | None]

# The first spec version that defines each verb.
_VERB_SINCE = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}


class CniVerbs(Protocol):
    """What both executables implement (VERSION is answered by `run` itself)."""

    def add(self, req: CniRequest, conf: NetConf) -> CniResult | None: ...
    def delete(self, req: CniRequest, conf: NetConf) -> CniResult | None: ...
    def check(self, req: CniRequest, conf: NetConf) -> CniResult | None: ...
    def status(self, req: CniRequest, conf: NetConf) -> CniResult | None: ...
    def gc(self, req: CniRequest, conf: NetConf) -> CniResult | None: ...


def verb_handlers(verbs: CniVerbs) -> dict[str, Handler]:
    """CNI_COMMAND -> the verb that serves it, for `run`."""
    return {
        "ADD": verbs.add,
        "DEL": verbs.delete,
        "CHECK": verbs.check,
        "STATUS": verbs.status,
        "GC": verbs.gc,
    }


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: str
    error_code: int | None = None  # the CNI error code when the call failed


def version_info(raw: bytes) -> dict[str, object]:
    """VERSION: echo the caller's cniVersion when we speak it (else our latest) and list ours."""
    version = LATEST_VERSION
    try:
        asked = json.loads(raw or b"{}").get("cniVersion")
    except (ValueError, AttributeError):
        asked = None
    if isinstance(asked, str) and asked in SUPPORTED_VERSIONS:
        version = asked
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


_logging_configured = False


def configure_logging(conf: NetConf) -> None:
    global _logging_configured
    if _logging_configured:
        return
    _logging_configured = True
    root = logging.getLogger()
    handler: logging.Handler
    if conf.log_file_path:
        try:
            handler = logging.FileHandler(conf.log_file_path)
        except OSError:
            handler = logging.StreamHandler()
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(conf.log_level.upper())


def run(
    env: Mapping[str, str],
    stdin: bytes,
    handlers: Mapping[str, Handler],
    *,
    configure_logs: bool = True,
    notice: str = "",
) -> Outcome:
    """Run one CNI call (see the module docstring). `notice` is logged as a warning once logging is
    configured (the launcher's reason for serving the call in this process)."""
    version = LATEST_VERSION
    try:
        req = parse_request(env)
        if req.command == "VERSION":
            return Outcome(0, json.dumps(version_info(stdin)))
        raw = load_json(stdin)
        if isinstance(raw.get("cniVersion"), str) and raw["cniVersion"] in SUPPORTED_VERSIONS:
            version = raw["cniVersion"]
        conf = parse_netconf(raw)
        since = _VERB_SINCE.get(req.command)
        if since and version_tuple(conf.cni_version) < version_tuple(since):
            raise CniError(
                INCOMPATIBLE_VERSION,
                f"config version does not allow {req.command}",
                f"{req.command} needs cniVersion {since} or later; the config says {conf.cni_version}",
            )
        if configure_logs:
            configure_logging(conf)
        if notice:
            log.warning("%s container=%s command=%s", notice, req.container_id, req.command)
        handler = handlers[req.command]
        log.debug(
            "CNI call command=%s container=%s netns=%s ifname=%s network=%s",
            req.command,
            req.container_id,
            req.netns,
            req.ifname,
            conf.name,
        )
        result = handler(req, conf)
        if result is None:
            return Outcome(0, "")
        return Outcome(0, json.dumps(result.to_wire(conf.cni_version)))
    except Exception as exc:
        err = classify(exc)
        level = logging.WARNING if err.code < 999 else logging.ERROR
        log.log(
            level,
            "CNI call failed code=%d msg=%s details=%s",
            err.code,
            err.msg,
            err.details,
            exc_info=err.code >= 999,
        )
        return Outcome(1, json.dumps(err.to_wire(version)), err.code)

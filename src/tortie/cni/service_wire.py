"""The frames the CNI launcher and the node's CNI service exchange over their unix socket.

Pure and import-free (the launcher loads it on every CNI call). One request, one reply, per
connection:

    request  b"TCNQ" 0x01 <u32 big-endian length> <plugin> 0x00 (<KEY>=<VALUE> 0x00)* 0x00 <stdin bytes>
    reply    b"TCNR" 0x01 <u32 big-endian length> <exit code, ASCII digits> 0x0a <stdout bytes>

The environment travels as the C environment does (NUL-terminated `KEY=VALUE` strings, an empty one
ending the list), stdin and stdout as raw bytes, so neither side has to escape anything. A request
is at most `MAX_REQUEST` bytes (1 MiB of configuration, the plugin's own input limit, plus room for
the environment); a reply at most `MAX_REPLY`.

`decode_*` raise `WireError` (a ValueError) on anything that is not a well-formed frame: the
service answers such a request with a CNI error, the launcher reports such a reply as one.
"""

from __future__ import annotations

REQUEST_MAGIC = b"TCNQ\x01"
REPLY_MAGIC = b"TCNR\x01"
HEADER = 9  # magic (5) + length (4)
MAX_REQUEST = (1 << 20) + (256 << 10)
MAX_REPLY = 4 << 20


class WireError(ValueError):
    """A frame that is not one of ours (wrong magic, bad length, malformed fields)."""


def _frame(magic: bytes, payload: bytes) -> bytes:
    return magic + len(payload).to_bytes(4, "big") + payload


def payload_length(header: bytes, magic: bytes, limit: int) -> int:
    """The payload length announced by a frame's first HEADER bytes."""
    if len(header) != HEADER or header[:5] != magic:
        raise WireError(f"not a tortie CNI frame (starts with {bytes(header[:16])!r})")
    length = int.from_bytes(header[5:9], "big")
    if length > limit:
        raise WireError(f"frame of {length} bytes is over the limit of {limit}")
    return length


def encode_request(plugin: str, env: dict[str, str], stdin: bytes) -> bytes:
    parts = [plugin.encode()]
    parts += [f"{key}={value}".encode() for key, value in env.items() if "\0" not in key + value]
    return _frame(REQUEST_MAGIC, b"\0".join(parts) + b"\0\0" + stdin)


def decode_request(payload: bytes) -> tuple[str, dict[str, str], bytes]:
    """(plugin, environment, stdin) of a request payload."""
    end = payload.find(b"\0")
    if end <= 0:
        raise WireError("the request names no plugin")
    try:
        plugin = payload[:end].decode("ascii")
    except UnicodeDecodeError:
        raise WireError("the plugin name is not ASCII") from None
    env: dict[str, str] = {}
    pos = end + 1
    while True:
        end = payload.find(b"\0", pos)
        if end < 0:
            raise WireError("the environment is not terminated")
        if end == pos:
            return plugin, env, payload[end + 1 :]
        key, sep, value = payload[pos:end].decode("utf-8", "surrogateescape").partition("=")
        if not sep or not key:
            raise WireError(f"environment entry {payload[pos:end][:40]!r} is not KEY=VALUE")
        env[key] = value
        pos = end + 1


def encode_reply(exit_code: int, stdout: bytes) -> bytes:
    return _frame(REPLY_MAGIC, str(int(exit_code)).encode() + b"\n" + stdout)


def decode_reply(payload: bytes) -> tuple[int, bytes]:
    """(exit code, stdout) of a reply payload."""
    end = payload.find(b"\n")
    digits = payload[:end] if end > 0 else b""
    if not digits.isdigit() or len(digits) > 3:
        raise WireError(f"the reply carries no exit code (starts with {bytes(payload[:16])!r})")
    return int(digits), payload[end + 1 :]

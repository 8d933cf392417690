"""A client for BIRD's control socket (the protocol `birdc` speaks), without running birdc.

Input: the socket path (`bird -s PATH`). Output: `Reply` lines of one command.

Protocol (BIRD 2, `doc/reply_codes` and `sysdep/unix/main.c`): on connect BIRD greets with
`0001 BIRD <version> ready.`; a command is one line; the answer is a sequence of lines
`DDDD-text` (more follows), ` text` (continuation of the previous code) and a final `DDDD text`.
Codes 0xxx report success, 1xxx are table rows, 2xxx table headings, 8xxx runtime errors and 9xxx
parse errors. Lines starting with `+` are asynchronous notices and are skipped.

Errors: `BirdNotRunning` when the socket cannot be reached, `BirdCommandError` for an 8xxx/9xxx
answer (e.g. a configuration that does not parse), both `DataplaneError`s.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from types import TracebackType

from tortie.common.errors import DataplaneError


class BirdNotRunning(DataplaneError):
    """Nothing answers on BIRD's control socket."""


class BirdCommandError(DataplaneError):
    """BIRD answered a command with an error reply (code 8xxx or 9xxx)."""


@dataclass(frozen=True)
class Reply:
    code: int
    text: str


class BirdControl:
    """One connection to BIRD's control socket; use as a context manager or call `close()`."""

    def __init__(self, socket_path: str, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(socket_path)
        except OSError as exc:
            self._sock.close()
            reason = exc.strerror or str(exc)
            raise BirdNotRunning(f"BIRD is not running (no answer on {socket_path}: {reason})") from None
        self._buf = b""
        greeting = self._read_reply()
        if not greeting or greeting[0].code != 1:
            self.close()
            raise BirdNotRunning(f"unexpected greeting on {socket_path}: {greeting!r}")
        self.version = greeting[0].text.removesuffix(" ready.")

    def __enter__(self) -> BirdControl:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def command(self, text: str) -> list[Reply]:
        """Send one command and return its whole answer. Raises BirdCommandError on an error reply."""
        if "\n" in text:
            raise ValueError("a BIRD command is a single line")
        try:
            self._sock.sendall(text.encode() + b"\n")
            replies = self._read_reply()
        except OSError as exc:
            raise BirdNotRunning(f"lost BIRD's control socket {self.socket_path}: {exc}") from None
        last = replies[-1] if replies else Reply(0, "")
        if last.code >= 8000:
            raise BirdCommandError(f"BIRD rejected {text!r}: {last.text}")
        return replies

    def configure(self, path: str | None = None) -> str:
        """Reload the configuration (from `path` or the file BIRD was started with); returns BIRD's
        summary ("Reconfigured", "Reconfiguration in progress", ...)."""
        cmd = f'configure "{path}"' if path else "configure"
        replies = self.command(cmd)
        return replies[-1].text if replies else ""

    # -- wire format --------------------------------------------------------------------------
    def _readline(self) -> str:
        while b"\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise OSError("connection closed by BIRD")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode(errors="replace")

    def _read_reply(self) -> list[Reply]:
        out: list[Reply] = []
        code = 0
        while True:
            line = self._readline()
            if line.startswith("+"):
                continue  # asynchronous notice
            if len(line) >= 5 and line[:4].isdigit() and line[4] in "- ":
                code = int(line[:4])
                out.append(Reply(code, line[5:]))
                if line[4] == " ":
                    return out
            else:
                out.append(Reply(code, line[1:] if line.startswith(" ") else line))

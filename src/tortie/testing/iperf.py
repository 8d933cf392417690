"""iperf3 measurements for tests that prove a rate limit (QoS).

    rate(run, dst, port=..., seconds=..., reverse=False) -> bits/s
        `run(argv, timeout)` runs the iperf3 client where the test wants it (a namespace, a lab
        workload) and returns the completed process; the server (`iperf3 -s -p PORT`) is the test's.
        The rate is the one iperf3's receiver counted; reverse (-R): the server sends. A server not
        ready (refused: not listening yet; busy or resetting: still finishing the previous test) is
        retried, up to 100 times; any other failure is an AssertionError with iperf3's own message.
    held_to(measure, limit, tolerance=0.1, attempts=3) -> bits/s
        asserts that `measure()` is within limit ± tolerance; a measurement above the band fails at
        once, one below it (a loaded machine short of CPU) is measured again, up to `attempts` times.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from subprocess import CompletedProcess

Runner = Callable[[Sequence[str], float], CompletedProcess[str]]
MBIT = 10**6
# the server not listening yet, or still finishing the previous test (iperf3 serves one at a time
# and resets or turns away a client that comes too early): try again
_NOT_READY = ("Connection refused", "server is busy", "unable to connect to server: Connection reset")


def rate(run: Runner, dst: str, *, port: int, seconds: int = 4, reverse: bool = False) -> float:
    argv = ["iperf3", "-c", dst, "-p", str(port), "-t", str(seconds), "-J", *(["-R"] if reverse else [])]
    for _ in range(100):
        proc = run(argv, seconds + 60.0)
        try:
            answer = json.loads(proc.stdout)
        except ValueError:
            answer = {"error": proc.stdout[-500:] + proc.stderr[-500:]}
        error = str(answer.get("error") or "")
        if not error and proc.returncode == 0:
            return float(answer["end"]["sum_received"]["bits_per_second"])
        if not any(transient in error for transient in _NOT_READY):
            raise AssertionError(f"iperf3 failed (exit {proc.returncode}): {error or proc.stdout[-500:]}")
        time.sleep(0.1 if "refused" in error else 0.5)
    raise AssertionError(f"no iperf3 server listened at {dst} port {port}")


def held_to(measure: Callable[[], float], limit: int, *, tolerance: float = 0.1, attempts: int = 3) -> float:
    measured = 0.0
    for _ in range(attempts):
        measured = measure()
        print(f"measured {measured / MBIT:.2f} Mbit/s, limit {limit / MBIT:g} Mbit/s")
        assert measured <= (1 + tolerance) * limit, (
            f"{measured / MBIT:.2f} Mbit/s is over the {limit / MBIT:g} Mbit/s limit")
        if measured >= (1 - tolerance) * limit:
            return measured
    raise AssertionError(f"{measured / MBIT:.2f} Mbit/s: short of the {limit / MBIT:g} Mbit/s limit "
                         f"{attempts} times")

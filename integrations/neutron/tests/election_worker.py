"""A stand-in neutron-server process for the election test: Neutron's ML2 plugin with the tortie
driver on a SQLite file shared with the other workers, electing in the tortie datastore.

    python election_worker.py --neutron-db PATH --datastore URL --name NAME

Prints `ready <pid>` once the plugin is loaded and the election has started; logs (INFO) to
stderr, including the driver's "election won/lost" and "resync done" lines. Runs until SIGTERM,
then steps down cleanly (stop_background) and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from neutron_harness import start_neutron


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--neutron-db", required=True)
    parser.add_argument("--datastore", required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    harness = start_neutron(
        connection=f"sqlite:///{args.neutron_db}", datastore=args.datastore, elector_name=args.name,
        election_interval=0.2, election_ttl=2.0, election_check_interval=0.1, resync_interval=0.3,
        require_live_agent=False,
    )
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {args.name} %(name)s %(message)s")
    logging.getLogger("networking_tortie").setLevel(logging.INFO)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    harness.driver.start_background()
    print(f"ready {os.getpid()}", flush=True)
    stop.wait()
    harness.driver.stop_background()
    return 0


if __name__ == "__main__":
    sys.exit(main())

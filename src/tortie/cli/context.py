"""What every CLI handler needs from the global options: the datastore to talk to.

Contract: `open_store(args)` opens the datastore named by `--datastore`, else `TORTIE_DATASTORE`,
else the embedded default (see `tortie.datastore.url`). Errors opening it surface as
`DatastoreUnavailable` (exit 2) or `UserError` for a malformed URL (exit 1).
"""

from __future__ import annotations

import argparse

from tortie.datastore.api import Datastore


def open_store(args: argparse.Namespace) -> Datastore:
    from tortie.datastore.url import open_datastore

    return open_datastore(getattr(args, "datastore", None))

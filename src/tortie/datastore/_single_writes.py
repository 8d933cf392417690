"""The single-key write methods of the `Datastore` protocol, expressed once through `commit`.

Every backend implements `commit(ops)` (the one place where conditions are checked and revisions
assigned); mixing in `SingleKeyWrites` gives it create/update/put/delete with identical semantics:
each is a one-op transaction and returns that op's KV.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Sequence

from tortie.datastore.api import KV, JSONObject, TxnOp


class SingleKeyWrites(abc.ABC):
    @abc.abstractmethod
    def commit(self, ops: Sequence[TxnOp]) -> builtins.list[KV]:
        """The backend's atomic transaction (see `tortie.datastore.api`)."""

    def create(self, key: str, value: JSONObject, lease: int | None = None) -> KV:
        return self.commit([TxnOp("create", key, value, lease=lease)])[0]

    def update(
        self, key: str, value: JSONObject, expected_revision: int | None = None, lease: int | None = None
    ) -> KV:
        return self.commit([TxnOp("update", key, value, expected_revision, lease)])[0]

    def put(self, key: str, value: JSONObject, lease: int | None = None) -> KV:
        return self.commit([TxnOp("put", key, value, lease=lease)])[0]

    def delete(self, key: str, expected_revision: int | None = None) -> KV:
        return self.commit([TxnOp("delete", key, expected_revision=expected_revision)])[0]

"""A compatibility layer over two moto 5.2.5 internals that make long local runs impossible.

Both are memory and time that grow with everything the process ever stored, not with what it
stores now:

1. **Transaction rollback by whole-table copies.** ``DynamoDBBackend.transact_write_items``
   (``moto/dynamodb/models/__init__.py``) ``copy.deepcopy``-s every table a transaction names,
   once per transaction item, before it starts, so that it can put the copies back if the
   transaction is cancelled. A six-item transaction on a table of 10,000 items copies 60,000
   items. The product writes every state change in a transaction, so each order costs time in
   proportion to every order before it (measured: ~2.5 ms more per stored order).
2. **A class-level list of every model instance.** ``BaseModel.__new__``
   (``moto/core/common_models.py``) appends every instance of every model class to
   ``cls.instances_tracked`` (created by ``InstanceTrackerMeta`` in
   ``moto/core/base_backend.py``) and nothing removes it until a moto reset. Every DynamoDB
   ``Item`` is a ``BaseModel``: each stored item, each copy ``update_item`` makes of the old
   item, each copy of a query or scan result, and each item of each table copy of (1) stays
   reachable forever, as does every SQS message. The list exists for moto's dashboard
   (``/moto-api/data.json``). Measured: a ``make run`` server held 5.9 GB after ~490 orders.

What this layer does instead, installed by ``install()``:

- ``transact_write_items``: moto's own algorithm (the same validation, the same order of
  checks and writes, the same cancellation reasons), except that before a Put, Update or Delete
  writes an item it records that one item as it was (by table and key, a copy of the stored
  ``Item`` or "absent"); when the transaction is cancelled, or anything escapes from it, those
  items alone are put back. Secondary indexes need nothing of their own: moto computes GSI and
  LSI results from the table's item store on every query, so restoring the items restores them.
  A table's stream records written by the transaction are dropped again, as the table copy did.
- ``BaseModel.__new__``: no longer tracks instances, except for moto's S3 models, whose reset
  uses the list to close the temporary files of overwritten keys. So moto's dashboard lists no
  DynamoDB or SQS objects; nothing else in moto 5.2.5 reads the list.

Guarded: ``install()`` refuses (``MotoCompatError``) unless moto is the version this was
written against and the source of every moto function it replaces or depends on is byte for
byte what it read (SHA-256 fingerprints below). A moto upgrade therefore fails loudly at start,
never patches something it does not understand. ``TIMEBANK_MOTO_COMPAT=off`` runs moto as
shipped (``install_unless_disabled()``), to compare or to rule the layer out.

Installed by the ``make run`` moto server (``local.moto_server.SerializedMotoServer.start``)
and by the test suite (``tests/conftest.py``). It patches process-wide state: one install per
process, idempotent; ``uninstall()`` restores moto as shipped.

Upstream issue to file (also in local/README.md)
------------------------------------------------

Title: DynamoDB transact_write_items deep-copies whole tables per item, and BaseModel tracks
every instance forever: memory and latency grow without bound

    moto 5.2.5. Two behaviours together make a long-running moto server (or a long test
    session) grow without bound:

    1. moto/dynamodb/models/__init__.py, DynamoDBBackend.transact_write_items: for rollback it
       runs `original_table_state[table_name] = copy.deepcopy(self.tables[table_name])` inside
       a loop over the transaction items, i.e. every table the transaction names is copied in
       full once per item (a 6-item transaction on one table copies it 6 times), on every
       transaction, successful or not. Cost is O(items in the tables) per transaction.
    2. moto/core/common_models.py, BaseModel.__new__: every instance is appended to the
       class-level `instances_tracked` list (InstanceTrackerMeta), which is only cleared by a
       reset. dynamodb.Item is a BaseModel, so every item, every copy made by update_item
       (`orig_item = copy.deepcopy(item)`), by query/scan results, and by (1) stays reachable.

    Measured on a server driving a real workload: 5.9 GB RSS after ~490 business operations
    (each a handful of TransactWriteItems on tables of a few thousand items); throughput fell
    from 2.95 to 1.41 operations/s over 300 operations; the same workload with (1) and (2)
    avoided ran flat at ~0.17 s per operation. A reproducible soak (sequential whole orders over
    HTTP): as shipped, 300 orders: RSS 206 -> 2,312 MB, 1.85 -> 1.08 orders/s, 958,537 Items
    alive for 2,321 stored; both avoided, 2,000 orders: 327 MB, 2.36 -> 2.13 orders/s, 14,235
    Items alive for 14,235 stored.

    Proposed fix:
    - (1) journal instead of snapshot: before each Put/Update/Delete of the transaction, record
      (table, hash key, range key) -> deepcopy of the current Item or None (first touch wins;
      the unicity check already forbids two operations on one key). On cancellation restore
      exactly those entries (pop the ones that were absent). Indexes are derived from
      `Table.items`, so they follow. This also keeps the Table objects themselves (today a
      rollback replaces `self.tables[name]` with the copy) and covers tables named by ARN,
      which the name-keyed snapshot misses. Also roll back when an exception other than the
      two caught ones escapes the loop (e.g. TransactWriteSingleOpException raised for the
      k-th item leaves items 1..k-1 applied today).
    - (2) do not keep strong references: track with weakref (e.g. a per-class WeakSet that
      `reset_model_data` clears), or only when the dashboard is enabled. S3Backend.reset relies
      on the list to dispose FakeKey/FakeMultipart buffers, so S3 needs either weak tracking or
      its own registry.
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

EXPECTED_MOTO_VERSION = "5.2.5"
DISABLE_ENV = "TIMEBANK_MOTO_COMPAT"

# SHA-256 of inspect.getsource() of each moto function this layer replaces, calls, or whose
# data layout it writes back into. Regenerate with `python -m local.moto_compat --fingerprints`
# only after reading the new moto code and adapting this module to it.
FINGERPRINTS = {
    "moto.core.common_models:BaseModel.__new__":
        "08cf0ef20e88029a2eb91949492ce3281001a34b98143db186239962ad379eec",
    "moto.dynamodb.models:DynamoDBBackend.transact_write_items":
        "81db2cb7d94e39c90b3a2077e1f4bb41a449c558ef9b1b1e2910fdaa39978ad4",
    "moto.dynamodb.models:DynamoDBBackend.get_keys_value":
        "1f948797496ddc2cd4e4752e29e470d19ce757ca3406e07fed6bd90b331c1caa",
    "moto.dynamodb.models.table:Table.__init__":
        "a56181a75aa270051d49daeb6a1f55b3eba543e6f58b4391e46d24a7cf8bbc74",
    "moto.dynamodb.models.table:Table.put_item":
        "de23933013ef842639046c19bcf7e418bce0474d810f6719368be4cedce11d47",
    "moto.dynamodb.models.table:Table.get_item":
        "b08e98fe37b7e5836afe03b010d637ef50df5dea6cbecd9cf8816eef326a21cd",
    "moto.dynamodb.models.table:Table.delete_item":
        "1594f7b07616c8cb8cdf0fbf58d6f54eeac83f25d7ac7b14e832a08e10efd8f9",
    "moto.dynamodb.models.table:StreamShard.add":
        "357dc6da267e5dd7d46e18ee25d14b232a98679677906a2f02e4d454d1f11e03",
    "moto.s3.models:S3Backend.reset":
        "5761904d8317d602747b6a33ad1a4a851af27ee71f414e677654eab809b56254",
}

# Models whose instance list moto itself needs: S3Backend.reset closes the temporary files of
# keys and multipart uploads that are no longer in any bucket through it.
TRACKED_MODULES = frozenset({"moto.s3.models"})


class MotoCompatError(RuntimeError):
    pass


@dataclass
class _State:
    installed: bool = False
    originals: dict[str, Any] = field(default_factory=dict)


_state = _State()
_lock = threading.Lock()
_BaseModel: Any = None  # moto's BaseModel, once installed


_NEW = "moto.core.common_models:BaseModel.__new__"
_TRANSACT = "moto.dynamodb.models:DynamoDBBackend.transact_write_items"


def _resolve(qualified: str) -> Any:
    import importlib

    if qualified in _state.originals:  # installed: moto's own function, not the replacement
        return getattr(_state.originals[qualified], "__func__", _state.originals[qualified])
    module_name, _, path = qualified.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in path.split("."):
        target = target.__dict__[part] if isinstance(target, type) else getattr(target, part)
    # staticmethod objects (BaseModel.__new__ in a class __dict__) hide their function
    return getattr(target, "__func__", target)


def source_fingerprint(qualified: str) -> str:
    return hashlib.sha256(inspect.getsource(_resolve(qualified)).encode()).hexdigest()


def current_fingerprints() -> dict[str, str]:
    return {name: source_fingerprint(name) for name in FINGERPRINTS}


def check_compatible() -> None:
    """Raise ``MotoCompatError`` unless moto's internals are exactly what this layer expects."""
    import moto

    version = getattr(moto, "__version__", "unknown")
    if version != EXPECTED_MOTO_VERSION:
        raise MotoCompatError(
            f"local/moto_compat.py was written against moto {EXPECTED_MOTO_VERSION} and moto "
            f"{version} is installed. It replaces moto internals (transaction rollback, instance "
            "tracking), so it will not guess: read the new moto code (see the module docstring), "
            "adapt the layer and its FINGERPRINTS, or, if the upstream fix has landed, drop it. "
            f"{DISABLE_ENV}=off runs moto unpatched meanwhile (memory then grows with history).")
    changed = []
    for name, expected in FINGERPRINTS.items():
        try:
            actual = source_fingerprint(name)
        except (ImportError, AttributeError, KeyError, OSError, TypeError) as exc:
            changed.append(f"{name} (cannot read it: {exc})")
            continue
        if actual != expected:
            changed.append(name)
    if changed:
        raise MotoCompatError(
            f"moto {version} does not have the internals local/moto_compat.py was written "
            f"against; changed: {', '.join(changed)}. Refusing to patch. Read those functions, "
            "adapt the layer, then update FINGERPRINTS (python -m local.moto_compat "
            f"--fingerprints). {DISABLE_ENV}=off runs moto unpatched meanwhile.")


def disabled_by_environment(env: Any = None) -> bool:
    raw = (os.environ if env is None else env).get(DISABLE_ENV, "")
    return raw.strip().lower() in ("0", "off", "false", "no")


def is_installed() -> bool:
    return _state.installed


def install() -> None:
    """Patch moto (idempotent). Raises ``MotoCompatError`` when moto is not what it expects."""
    with _lock:
        if _state.installed:
            return
        check_compatible()
        from moto.core.common_models import BaseModel
        from moto.dynamodb.models import DynamoDBBackend

        originals = {
            _NEW: BaseModel.__dict__["__new__"],
            _TRANSACT: DynamoDBBackend.__dict__["transact_write_items"],
        }
        global _BaseModel
        _BaseModel = BaseModel
        # Assigning __new__ after class creation needs the explicit staticmethod; CPython then
        # updates the allocation slot of every subclass too.
        BaseModel.__new__ = staticmethod(_new_untracked)  # type: ignore[assignment]
        DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
        _state.originals = originals
        _state.installed = True


def install_unless_disabled() -> bool:
    """``install()`` unless ``TIMEBANK_MOTO_COMPAT=off``; True when the layer is in effect."""
    if disabled_by_environment():
        return False
    install()
    return True


def uninstall() -> None:
    """moto as shipped again (instances created meanwhile stay untracked)."""
    with _lock:
        if not _state.installed:
            return
        from moto.core.common_models import BaseModel
        from moto.dynamodb.models import DynamoDBBackend

        BaseModel.__new__ = _state.originals[_NEW]  # type: ignore[assignment]
        DynamoDBBackend.transact_write_items = _state.originals[_TRANSACT]  # type: ignore[method-assign]
        _state.originals = {}
        _state.installed = False


def describe() -> str:
    """One line for the runtime's log."""
    if is_installed():
        return "compat layer on: item-level transaction rollback, no instance tracking"
    return f"compat layer OFF ({DISABLE_ENV}=off): memory and time grow with history"


# --- instance tracking ---------------------------------------------------------------------

def _new_untracked(cls: type, *args: Any, **kwargs: Any) -> Any:
    # As moto's BaseModel.__new__: the next __new__ in the MRO, without arguments. (BaseModel
    # is bound at install; an import here would run on every model instance.)
    instance = super(_BaseModel, cls).__new__(cls)  # type: ignore[misc]
    if cls.__module__ in TRACKED_MODULES:
        cls.instances_tracked.append(instance)  # type: ignore[attr-defined]
    return instance


# --- transaction rollback ------------------------------------------------------------------

class _TouchedItems:
    """The stored state, before this transaction, of each item it writes (first touch wins)."""

    def __init__(self) -> None:
        self._items: dict[tuple[int, Any, Any], tuple[Any, Any, Any, bool, Any]] = {}
        self._streams: dict[int, tuple[Any, int]] = {}

    def record(self, backend: Any, table_name: str, key: dict[str, Any]) -> None:
        try:
            table = backend.get_table(table_name)
            hash_key, range_key = backend.get_keys_value(table, key)
        except Exception:
            # The operation makes the same look-ups before it writes anything, so it fails the
            # same way (with moto's own error) and there is nothing to protect.
            return
        identity = (id(table), hash_key, range_key)
        if identity in self._items:
            return
        if table.has_range_key:
            # .get, not [...]: Table.items is a defaultdict and must not grow a bucket here.
            bucket = table.items.get(hash_key)
            bucket_existed = bucket is not None
            stored = bucket.get(range_key) if bucket is not None else None
        else:
            bucket_existed = True
            stored = table.items.get(hash_key)
        # A copy, because Update changes the stored Item in place.
        previous = copy.deepcopy(stored) if stored is not None else None
        self._items[identity] = (table, hash_key, range_key, bucket_existed, previous)
        shard = table.stream_shard
        if shard is not None and id(table) not in self._streams:
            self._streams[id(table)] = (shard, len(shard.items))

    def rollback(self) -> None:
        for table, hash_key, range_key, bucket_existed, previous in reversed(list(self._items.values())):
            if not table.has_range_key:
                if previous is None:
                    table.items.pop(hash_key, None)
                else:
                    table.items[hash_key] = previous
                continue
            if previous is not None:
                table.items[hash_key][range_key] = previous
                continue
            bucket = table.items.get(hash_key)
            if bucket is not None:
                bucket.pop(range_key, None)
                if not bucket and not bucket_existed:
                    del table.items[hash_key]
        for shard, length in self._streams.values():
            del shard.items[length:]
        self._items.clear()
        self._streams.clear()


def _transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    """moto 5.2.5's DynamoDBBackend.transact_write_items (Apache-2.0, getmoto/moto), with the
    whole-table deep copies replaced by ``_TouchedItems``. Everything else is moto's code in
    moto's order, so cancellation reasons and errors are the same; the one deliberate change:
    any exception leaving the loop rolls back (moto's raises TransactWriteSingleOpException
    without restoring earlier items)."""
    from moto.dynamodb import models as m

    if len(transact_items) > 100:
        raise m.TooManyTransactionsException()
    touched = _TouchedItems()

    target_items: set[tuple[str, str]] = set()

    def check_unicity(table_name: str, key: dict[str, Any]) -> None:
        item = (str(table_name), str(dict(sorted(key.items()))))
        if item in target_items:
            raise m.MultipleTransactionsException()
        target_items.add(item)

    errors: list[tuple[str, str, dict[str, Any]] | tuple[None, None, None]] = []
    try:
        for item in transact_items:
            original_item: dict[str, Any] | None = None
            if len(list(item.keys())) > 1:
                raise m.TransactWriteSingleOpException

            try:
                op_type, op = next(iter(item.items()))
                if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                    raise ValueError("Unsupported transaction operation")

                table_name = op["TableName"]
                condition_expression = op.get("ConditionExpression")
                expression_attribute_names = op.get("ExpressionAttributeNames")
                expression_attribute_values = op.get("ExpressionAttributeValues")
                return_values_on_condition_check_failure = op.get(
                    "ReturnValuesOnConditionCheckFailure")

                if op_type == "Put":
                    attrs = op["Item"]
                    table = self.get_table(table_name)
                    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = attrs[table.range_key_attr]
                else:
                    key = op["Key"]

                check_unicity(table_name, key)
                if op_type != "ConditionCheck":
                    touched.record(self, table_name, key)

                current = self.get_item(table_name, key)
                if condition_expression is not None:
                    condition_op = m.get_filter_expression(
                        condition_expression, expression_attribute_names,
                        expression_attribute_values)
                    if not condition_op.expr(current):
                        if return_values_on_condition_check_failure == "ALL_OLD" and current:
                            original_item = current.to_json()["Attributes"]
                        raise m.ConditionalCheckFailed(item=original_item)

                if op_type == "Put":
                    self.put_item(
                        table_name, op["Item"],
                        condition_expression=condition_expression,
                        expression_attribute_names=expression_attribute_names,
                        expression_attribute_values=expression_attribute_values)
                elif op_type == "Delete":
                    self.delete_item(
                        table_name, key,
                        condition_expression=condition_expression,
                        expression_attribute_names=expression_attribute_names,
                        expression_attribute_values=expression_attribute_values)
                elif op_type == "Update":
                    self.update_item(
                        table_name, key,
                        update_expression=op["UpdateExpression"],
                        condition_expression=condition_expression,
                        expression_attribute_names=expression_attribute_names,
                        expression_attribute_values=expression_attribute_values)
                errors.append((None, None, None))
            except (m.MultipleTransactionsException, m.MockValidationException):
                raise  # rolled back below, as moto does
            except m.ConditionalCheckFailed as e:
                errors.append(("ConditionalCheckFailed", str(e.message), original_item))  # type: ignore[arg-type]
            except Exception as e:  # noqa: BLE001 - moto reports any other failure per item
                errors.append((type(e).__name__, str(e), original_item))  # type: ignore[arg-type]

        if any(code is not None for code, _, _ in errors):
            raise m.TransactionCanceledException(errors)
    except BaseException:
        touched.rollback()
        raise


# --- command line ---------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args == ["--fingerprints"]:
        for name, digest in current_fingerprints().items():
            print(f'    "{name}":\n        "{digest}",')
        return 0
    try:
        check_compatible()
    except MotoCompatError as exc:
        print(exc)
        return 1
    print(f"moto matches what local/moto_compat.py expects ({EXPECTED_MOTO_VERSION})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

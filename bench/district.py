"""通存通兑: DynamoDB cost of one cross-community transfer, on each of the district's three
stacks (the source community, the hub, the destination community).

The district runs in this process (``tests/district.py``: three stacks on one moto account,
calling each other with signed requests through the real routes), as the HTTP tests run it.
A call is counted for the stack whose table it names (each stack's tables carry its prefix),
so the destination's work that the hub's delivery triggers counts for the destination, and
the nonce a signed call leaves counts for the stack that checked it. The queues are drained
between steps as Lambda would; their receive/delete calls are SQS, not DynamoDB.

One transfer is sent first and not counted (first-use costs: a login's token, the clearing
account's first balance row), then one credited and one refused transfer are measured.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bench.ddb_counter import DynamoDBCounter, Tally, forget_cached_clients

STACKS = {"source (demo)": "timebank-demo-", "hub": "timebank-hub-demo-", "destination (demo-east)": "timebank-demo-east-"}


def tables_of(operation: str, params: dict[str, Any]) -> set[str]:
    names = set()
    if "TableName" in params:
        names.add(params["TableName"])
    names.update(params.get("RequestItems", {}).keys())
    for item in params.get("TransactItems", []):
        for action in item.values():
            if isinstance(action, dict) and "TableName" in action:
                names.add(action["TableName"])
    return names


def stack_of(table: str) -> str:
    matches = [(len(prefix), stack) for stack, prefix in STACKS.items() if table.startswith(prefix)]
    return max(matches)[1] if matches else "other"


class StackCounter(DynamoDBCounter):
    """Also tallies each DynamoDB call under the stack whose table it names."""

    def __init__(self) -> None:
        super().__init__()
        self.by_stack: dict[str, Tally] = {}

    def _count(self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any],
               **kwargs: Any) -> None:
        before = self.snapshot()
        super()._count(http_response, parsed, model, context, **kwargs)
        spent = self.snapshot() - before
        stacks = {stack_of(t) for t in tables_of(model.name, context.get("timebank_bench_params", {}))}
        stack = stacks.pop() if len(stacks) == 1 else "several"
        with self._lock:
            self.by_stack[stack] = self.by_stack.get(stack, Tally()) + spent

    def stacks_snapshot(self) -> dict[str, Tally]:
        with self._lock:
            return {k: v.copy() for k, v in self.by_stack.items()}


@dataclass
class TransferCost:
    label: str
    status: str
    per_stack: dict[str, Tally] = field(default_factory=dict)


def _attach(counter: StackCounter) -> Any:
    import botocore.session

    original = botocore.session.Session.create_client

    def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
        return counter.attach(original(session, *args, **kwargs))

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
    return original


def measure_district() -> list[TransferCost]:
    import botocore.session

    from tests.district import district_world
    from tests.helpers import as_json, json_headers, verified_resident

    counter = StackCounter()
    original = _attach(counter)
    try:
        forget_cached_clients()
        with district_world() as world:
            forget_cached_clients()
            payer_h, payer = verified_resident(world.demo, "bench-daughter", building="1", unit="1", room="101")
            parent_h, parent = verified_resident(world.east, "bench-parent", building="1", unit="1", room="101")
            stranger_h, stranger = verified_resident(world.east, "bench-stranger", building="2", unit="1",
                                                     room="201")
            for client, headers, other, community in ((world.demo, payer_h, parent, "demo-east"),
                                                      (world.east, parent_h, payer, "demo"),
                                                      (world.demo, payer_h, stranger, "demo-east")):
                client.http.post("/v1/households/mine/relatives", headers=headers,
                                 body=as_json({"household_id": other["household_id"], "community": community}))

            def one(key: str, household_id: str) -> str:
                response = world.demo.http.post(
                    "/v1/transfers", headers=json_headers(payer_h, key),
                    body=as_json({"to": {"community": "demo-east", "household_id": household_id}, "amount": 10}))
                transfer_id = json.loads(response.body)["id"]
                world.settle()
                shown = world.demo.http.get(f"/v1/transfers/{transfer_id}", headers=payer_h)
                return json.loads(shown.body)["status"]

            one("bench-warm-up", parent["household_id"])
            results = []
            for label, key, household in (("to relatives: credited, posted", "bench-credited", parent["household_id"]),
                                          ("not relatives there: refused, voided", "bench-refused",
                                           stranger["household_id"])):
                before = counter.stacks_snapshot()
                status = one(key, household)
                after = counter.stacks_snapshot()
                results.append(TransferCost(label, status, {
                    stack: after.get(stack, Tally()) - before.get(stack, Tally())
                    for stack in [*STACKS, "several", "other"] if stack in after}))
            return results
    finally:
        botocore.session.Session.create_client = original  # type: ignore[method-assign]
        forget_cached_clients()


def district_table(results: list[TransferCost]) -> str:
    from bench.report import dynamodb_calls_text, table

    rows = []
    for result in results:
        total = Tally()
        for stack, tally in result.per_stack.items():
            if not tally.total_calls:
                continue
            total = total + tally
            rows.append([result.label, stack, str(tally.total_calls), dynamodb_calls_text(tally),
                         str(tally.items_read), str(tally.items_written)])
        rows.append([result.label, f"all three ({result.status})", str(total.total_calls), "",
                     str(total.items_read), str(total.items_written)])
    return table(["transfer", "stack", "calls", "calls by operation", "read", "written"], rows, right={2, 4, 5})


def main() -> int:
    """``python -m bench.district``: in a process of its own (three stacks' import-time names)."""
    from bench.environment import use_bench_environment

    use_bench_environment()
    results = measure_district()
    print(district_table(results))
    return 0 if all(r.status in ("posted", "failed") for r in results) else 1


if __name__ == "__main__":
    import sys

    sys.exit(main())

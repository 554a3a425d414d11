"""``make bench``'s 通存通兑 rows: one transfer's DynamoDB calls and items on each of the three stacks."""
from __future__ import annotations

from bench.district import stack_of, tables_of


def test_a_call_counts_for_the_stack_whose_table_it_names():
    assert stack_of("timebank-demo-ledger-balances") == "source (demo)"
    assert stack_of("timebank-demo-east-ledger-balances") == "destination (demo-east)"
    assert stack_of("timebank-hub-demo-hub-positions") == "hub"
    transaction = {"TransactItems": [{"Put": {"TableName": "timebank-hub-demo-hub-transfers"}},
                                     {"Update": {"TableName": "timebank-hub-demo-hub-positions"}}]}
    assert tables_of("TransactWriteItems", transaction) == {"timebank-hub-demo-hub-transfers",
                                                            "timebank-hub-demo-hub-positions"}
    assert tables_of("BatchGetItem", {"RequestItems": {"timebank-demo-east-logins": {}}}) == {
        "timebank-demo-east-logins"}


def test_make_bench_prints_calls_and_items_per_transfer_on_each_stack():
    from bench.__main__ import district_figures

    printed = district_figures()
    assert "failed:" not in printed, printed
    for stack in ("source (demo)", "hub", "destination (demo-east)", "all three (posted)", "all three (failed)"):
        assert stack in printed, printed

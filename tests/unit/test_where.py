"""The WHERE builder: only the filters given become conditions, values are always parameters."""

from __future__ import annotations

from shared.adapters.pg.where import Where


def test_only_given_filters_become_numbered_conditions() -> None:
    where = Where()
    where.eq("account_id", "acct_1")
    where.eq("type", None)
    where.when("id < {}", "evt_9")
    where.when("id >= {}", None)
    where.fixed("deleted_at IS NULL")
    assert where.sql() == "WHERE account_id = $1 AND id < $2 AND deleted_at IS NULL"
    assert where.param(20) == "$3"
    assert where.args == ["acct_1", "evt_9", 20]


def test_numbering_continues_after_the_statements_own_parameters() -> None:
    where = Where(args=["rpl_1"])
    where.add("dl.dead_at >= {}", "2026-01-01")
    assert where.sql() == "WHERE dl.dead_at >= $2" and where.args == ["rpl_1", "2026-01-01"]


def test_no_filter_means_no_where() -> None:
    assert Where().sql() == ""


def test_builders_sharing_one_args_list_number_placeholders_in_one_sequence() -> None:
    args: list[object] = ["fixed"]
    first, second = Where(args=args), Where(args=args)
    first.when("a = {}", 1)
    second.when("b = {}", 2)
    first.when("c = {}", None)
    first.when("c = {}", 3)
    assert (first.sql(), second.sql()) == ("WHERE a = $2 AND c = $4", "WHERE b = $3")
    assert args == ["fixed", 1, 2, 3]


def test_joined_is_the_conditions_without_the_keyword() -> None:
    on = Where()
    assert on.joined() == "true"
    on.add("e.account_id = {}", "acct_1")
    on.fixed("e.id = u.id")
    assert on.joined() == "e.account_id = $1 AND e.id = u.id"

"""Pages in the contract's shape, cut from ``limit + 1`` rows."""

from __future__ import annotations

from shared.core.paging import page_of


def _page(count: int, limit: int) -> dict[str, object]:
    rows = [{"id": n} for n in range(count)]
    return page_of(rows, limit, lambda r: r["id"], lambda last: f"after-{last['id']}").to_json()


def test_the_extra_row_means_more_and_the_cursor_names_the_last_row_served() -> None:
    assert _page(4, 3) == {"data": [0, 1, 2], "has_more": True, "next_cursor": "after-2"}


def test_a_short_or_exact_page_is_the_last() -> None:
    assert _page(3, 3) == {"data": [0, 1, 2], "has_more": False, "next_cursor": None}
    assert _page(0, 3) == {"data": [], "has_more": False, "next_cursor": None}

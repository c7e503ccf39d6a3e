"""Which segments and units one read of a stream's record returns (worker/core/paging.py)."""

import pytest

from worker.core.paging import DEFAULT_LIMIT, MAX_LIMIT, InvalidPage, Page, parse_page, pick


def test_without_a_cursor_a_page_is_the_newest_in_order():
    assert pick([5, 1, 3, 2, 4], 3, None) == [3, 4, 5]
    assert pick([2, 0, 1], 10, None) == [0, 1, 2]
    assert pick([2, 0, 1], 0, None) == []  # limit 0: the record's fields only


def test_after_a_sequence_a_page_goes_forwards_and_pages_join_up():
    seqs = list(range(0, 23)) + [25, 26]  # a gap, as a resumed stream may leave
    pages, after = [], -1
    while True:
        page = pick(seqs, 10, after)
        pages.append(page)
        if len(page) < 10:
            break
        after = page[-1]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert sum(pages, []) == seqs
    assert pick(seqs, 10, 26) == []


def test_query_arguments_make_a_page():
    assert parse_page({}) == Page(DEFAULT_LIMIT, None, None)
    assert parse_page({"limit": "0", "after_segment": "-1", "after_unit": "40"}) == Page(0, -1, 40)
    assert parse_page({"limit": str(MAX_LIMIT)}).limit == MAX_LIMIT


@pytest.mark.parametrize("args, says", [
    ({"limit": "ten"}, "limit must be a whole number"),
    ({"limit": "1.5"}, "limit must be a whole number"),
    ({"limit": "--1"}, "limit must be a whole number"),
    ({"limit": str(MAX_LIMIT + 1)}, f"between 0 and {MAX_LIMIT}"),
    ({"limit": "-1"}, "between 0"),
    ({"after_segment": "-2"}, "after_segment must be between -1"),
    ({"after_unit": "9" * 40}, "after_unit must be a whole number"),
])
def test_a_page_out_of_range_says_which_argument_and_why(args, says):
    with pytest.raises(InvalidPage, match=says):
        parse_page(args)

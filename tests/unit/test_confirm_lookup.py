"""How the confirmer asks DPS about a group's due units: one paged query, or one GET each."""

from __future__ import annotations

from pipeline.service.confirming import GROUP_QUERY_THRESHOLD, PAGE_SIZE, GroupSizes


def test_a_query_pays_when_at_least_as_many_units_are_due_as_the_group_has_pages() -> None:
    sizes = GroupSizes({"g": PAGE_SIZE * 20 + 1})  # 21 pages

    assert sizes.query_pays("g", 21) and sizes.query_pays("g", 200)
    assert not sizes.query_pays("g", 20)


def test_an_unknown_group_is_queried_once_to_learn_its_size_but_never_for_a_few_units() -> None:
    assert GroupSizes().query_pays("g", GROUP_QUERY_THRESHOLD)
    assert not GroupSizes().query_pays("g", GROUP_QUERY_THRESHOLD - 1)
    assert not GroupSizes({"g": 5}).query_pays("g", GROUP_QUERY_THRESHOLD - 1)  # one page, yet few units

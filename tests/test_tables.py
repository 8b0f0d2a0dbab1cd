"""style_verify: each verify row gets its verdict's colour in the rendered HTML (green for a fix that
works, red for one that does not), and a frame that is not a verify table gets the kit's error."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

import qwenvl_diag as qd
from qwenvl_diag._compat import transformers_at_least

GREEN, GREY_GREEN, RED = "#b9e4bd", "#dfe8dc", "#f6c1c1"


def _frame(verdicts: list[str]) -> pd.DataFrame:
    """A verify-shaped frame, one row per verdict (a failing row has no logits and no ids)."""
    rows = []
    for i, verdict in enumerate(verdicts):
        passed = verdict in ("fixed", "not needed")
        rows.append(
            {
                "fix": f"fix_{i}",
                "error_before": None if verdict == "not needed" else "Expected all tensors ...",
                "error_after": None if passed else "Expected all tensors ...",
                "max_abs_logit_diff": 0.0 if passed else math.nan,
                "same_generated_ids": True if passed else None,
                "verdict": verdict,
                "why": f"reason {i}",
            }
        )
    return pd.DataFrame(rows, columns=qd.VERIFY_COLUMNS, dtype=object).astype({"max_abs_logit_diff": float})


def _row_colours(html: str, row: int) -> set[str]:
    """The background colours the rendered CSS gives the cells of data row `row`."""
    colours = set()
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", html):
        if re.search(rf"_row{row}_col\d+\b", selectors):
            colours.update(re.findall(r"background-color:\s*(#[0-9a-f]{6})", body))
    return colours


def test_each_verdict_colours_its_whole_row():
    verdicts = ["fixed", "not fixed", "not needed", "breaks results"]
    frame = _frame(verdicts)
    html = qd.style_verify(frame).to_html()
    expected = [GREEN, RED, GREY_GREEN, RED]
    for row, colour in enumerate(expected):
        assert _row_colours(html, row) == {colour}, (verdicts[row], _row_colours(html, row))
        assert html.count(f"_row{row}_col") >= len(qd.VERIFY_COLUMNS)  # every cell of the row is styled
    assert set(qd.VERDICT_COLOURS) == set(qd.VERDICTS)
    assert len({GREEN, GREY_GREEN, RED}) == 3


def test_missing_values_and_the_logit_difference_read_cleanly():
    frame = _frame(["fixed", "not fixed"])
    before = frame.copy()
    html = qd.style_verify(frame).to_html()
    assert ">0.0e+00<" in html  # the fixed row's difference
    assert html.count(">—<") == 3  # the fixed row's error_after; the failed row's diff and ids
    assert ">nan<" not in html and ">None<" not in html
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is untouched


def test_a_selection_of_columns_keeps_its_colours():
    frame = _frame(["not fixed", "fixed"])[["fix", "verdict", "why"]]
    html = qd.style_verify(frame).to_html()
    assert _row_colours(html, 0) == {RED}
    assert _row_colours(html, 1) == {GREEN}
    assert "text-align: left" in html  # the reasons read from the left


@pytest.mark.parametrize(
    "wrong",
    [qd.fixes(), pd.DataFrame({"fix": ["single_device"]}), [{"verdict": "fixed"}], None],
    ids=["fix-catalogue", "no-verdict", "list", "none"],
)
def test_a_frame_without_the_verify_columns_says_what_to_pass(wrong):
    with pytest.raises(
        qd.InvalidArgumentError, match=r"takes the frame of qd\.verify\(scenario, fix=\.\.\.\)"
    ):
        qd.style_verify(wrong)


def test_unknown_verdicts_are_refused():
    frame = _frame(["fixed"]).assign(verdict="works")
    with pytest.raises(qd.InvalidArgumentError, match=r"verdicts \['works'\] are not qd\.verify's"):
        qd.style_verify(frame)


def test_a_real_verify_table_is_green_and_red_where_the_stack_says():
    scenario = qd.Scenario.preset("seed-video")
    frame = qd.verify(scenario, fix=["single_device", "second_per_grid_ts_as_list"])
    html = qd.style_verify(frame).to_html()
    if transformers_at_least("4.52.1"):  # fixed: every fix is "not needed"
        assert _row_colours(html, 0) == _row_colours(html, 1) == {GREY_GREEN}
    else:  # one GPU does not help the video bug; the list form does
        assert _row_colours(html, 0) == {RED}
        assert _row_colours(html, 1) == {GREEN}

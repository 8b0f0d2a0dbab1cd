"""style_frame: text columns of any frame read well (wrapped within a width, long texts folded, escaped);
style_verify: each verify row gets its verdict's colour in the rendered HTML (green for a fix that
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


def _cell_css(html: str, row: int, col: int) -> dict[str, str]:
    """The CSS properties the rendered style sheet gives cell (`row`, `col`)."""
    found = {}
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", html):
        if re.search(rf"_row{row}_col{col}\b", selectors):
            found.update(
                (name.strip(), value.strip())
                for name, value in (part.split(":", 1) for part in body.split(";") if ":" in part)
            )
    return found


def _cell_text(html: str, row: int, col: int) -> str:
    """The HTML inside the <td> of cell (`row`, `col`)."""
    match = re.search(rf'<td id="T_\w+_row{row}_col{col}" class="[^"]*" >(.*?)</td>', html, re.S)
    assert match, (row, col, html[:2000])
    return match.group(1)


def test_style_frame_wraps_long_text_within_a_width_and_leaves_short_columns_alone():
    frame = pd.DataFrame(
        {
            "release": ["4.51.3", "4.52.4"],
            "error": ["Expected all tensors to be on the same device, but found at least two devices", None],
            "line": pd.array([1334, None], dtype="Int64"),
        }
    )
    before = frame.copy()
    html = qd.style_frame(frame).to_html()
    narrowest, widest = qd.tables.TEXT_WIDTHS
    error = _cell_css(html, 0, 1)
    assert error["min-width"] == narrowest and error["max-width"] == widest, error
    assert error["white-space"] == "normal" and error["text-align"] == "left", error
    release = _cell_css(html, 0, 0)
    assert release.get("text-align") == "left" and "min-width" not in release, release  # short text
    assert _cell_css(html, 0, 2) == {}  # numbers keep the table's own alignment
    assert _cell_text(html, 1, 1) == "—" and _cell_text(html, 1, 2) == "—"  # missing values
    assert _cell_text(html, 0, 2) == "1334"
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is untouched


def test_style_frame_lets_long_words_and_column_names_break_at_separators():
    path = "transformers/models/qwen2_5_vl/modeling_qwen2_5_vl.py"
    frame = pd.DataFrame({"file": [path], "same_generated_ids": ["4.51.3"]})
    html = qd.style_frame(frame).to_html()
    cell = _cell_text(html, 0, 0)
    assert cell.replace("<wbr>", "") == path and cell.count("<wbr>") == path.count("/") + path.count("_") + 1
    assert "min-width" not in _cell_css(html, 0, 0)  # a path is not prose: it breaks, it does not wrap
    assert _cell_text(html, 0, 1) == "4.51.3"  # short words stay whole
    assert ">same_<wbr>generated_<wbr>ids</th>" in html  # so do long column names
    labelled = qd.style_frame(frame.set_axis(["inputs_to_execution_device"])).to_html()
    assert ">inputs_<wbr>to_<wbr>execution_<wbr>device</th>" in labelled  # and row labels


def test_style_verify_reads_its_text_as_style_frame_does():
    frame = _frame(["fixed", "not fixed"]).assign(fix="inputs_to_execution_device", why="a reason " * 5)
    html = qd.style_verify(frame).to_html()
    fix, why = qd.VERIFY_COLUMNS.index("fix"), qd.VERIFY_COLUMNS.index("why")
    assert _cell_text(html, 0, fix) == "inputs_<wbr>to_<wbr>execution_<wbr>device"
    assert _cell_css(html, 1, why)["min-width"] == qd.tables.TEXT_WIDTHS[0]
    assert _cell_text(html, 0, qd.VERIFY_COLUMNS.index("max_abs_logit_diff")) == "0.0e+00"


def test_style_frame_shows_a_list_of_texts_one_item_a_line():
    frame = pd.DataFrame({"evidence": [["the traceback ends at its line", "the model is qwen2_5_vl"], []]})
    html = qd.style_frame(frame).to_html()
    assert _cell_text(html, 0, 0) == "the traceback ends at its line<br>the model is qwen2_5_vl"
    assert _cell_text(html, 1, 0) == "—"  # nothing to show
    assert _cell_css(html, 0, 0)["min-width"] == qd.tables.TEXT_WIDTHS[0]  # prose: it wraps
    nothing = qd.style_frame(pd.DataFrame({"against": [[], []]})).to_html()
    assert _cell_text(nothing, 0, 0) == _cell_text(nothing, 1, 0) == "—"  # not "[]"


def test_style_frame_folds_very_long_text_and_escapes_html():
    long = "get_rope_index: " + " ".join(f"word{i}" for i in range(80)) + " <end>"
    frame = pd.DataFrame({"why": [long, "x < y & z"]})
    html = qd.style_frame(frame, fold_at=60).to_html()
    folded = _cell_text(html, 0, 0)
    summary = re.fullmatch(r"<details><summary>(.*?) …</summary>(.*)</details>", folded, re.S)
    assert summary, folded
    assert long.startswith(summary.group(1)) and len(summary.group(1)) <= 60, summary.group(1)
    assert summary.group(2) == long.replace("<", "&lt;").replace(">", "&gt;")  # the whole text, unfolded
    assert _cell_text(html, 1, 0) == "x &lt; y &amp; z"  # short: shown whole, escaped
    medium = pd.DataFrame({"why": ["word " * 40]})  # 200 characters: the default folds only longer ones
    assert "<details>" not in qd.style_frame(medium).to_html()
    assert "<details>" in qd.style_frame(pd.DataFrame({"why": ["word " * 60]})).to_html()


@pytest.mark.parametrize(
    ("wrong", "fold_at", "message"),
    [
        ([{"error": "x"}], 240, r"style_frame takes a pandas DataFrame .*; got list"),
        (pd.DataFrame({"a": ["x"]}), 0, r"fold_at is a number of characters"),
        (pd.DataFrame({"a": ["x"]}), True, r"fold_at is a number of characters"),
    ],
    ids=["list", "zero", "bool"],
)
def test_style_frame_refuses_what_it_cannot_show(wrong, fold_at, message):
    with pytest.raises(qd.InvalidArgumentError, match=message):
        qd.style_frame(wrong, fold_at=fold_at)


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

"""Frames for reading in a notebook or an HTML report.

`style_frame`: any of the kit's frames with its text readable: text columns wrap within a sensible
width (never squeezed into a one-word strip beside many columns), very long texts shortened with the
full text a click away. `style_verify`: a `qd.verify` table the same way, with one background colour
per verdict, green for a fix that works and red for one that does not.

>>> qd.style_frame(qd.run_in_versions(qd.Scenario.preset("seed-batched"), ["4.51.3"]))
>>> report = qd.verify(qd.Scenario.preset("seed-video"), fix=["single_device", "rope_mask_hotfix"])
>>> qd.style_verify(report)                      # a pandas Styler: displays as a coloured table
>>> qd.style_verify(report[["fix", "verdict", "why"]]).to_html()
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

import pandas as pd

from .errors import InvalidArgumentError, QwenVLDiagError
from .verify import VERDICTS, VERIFY_COLUMNS

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

VERDICT_COLOURS = {
    "fixed": "#b9e4bd",  # green: the run failed without the fix and matches the reference with it
    "not needed": "#dfe8dc",  # grey-green: it passed without the fix, and still does with it
    "not fixed": "#f6c1c1",  # red: it still fails with the fix
    "breaks results": "#f6c1c1",  # red: no error, but other numbers than the reference (or a new error)
}
"""Background colour of a verify row, per verdict (every one of `VERDICTS`). The text is set dark
(`TEXT_COLOUR`) so that the rows read the same in a dark notebook theme."""

TEXT_COLOUR = "#1a1a1a"

MISSING = "—"
"""How a missing value (None, NaN) shows."""
LONG_TEXT = 24
"""A column of prose (words with spaces) whose longest text has more characters than this wraps
between `TEXT_WIDTHS`."""
TEXT_WIDTHS = ("12em", "36em")
"""The narrowest and widest a column of prose is drawn: wide enough to read a phrase per line however
many columns share the page, narrow enough to wrap."""
FOLD_AT = 240
"""Texts longer than this many characters show their start; the whole text is a click away."""
LONG_WORD = 16
"""A word (no spaces) longer than this, e.g. a file path or a bug id, may break after "/", "_" or ".":
a long path in one column must not push the others into one-word strips."""

_BREAK_AFTER = re.compile(r"([/_.])(?=\w)")


def _is_text(value: Any) -> bool:
    """A str, or a list or tuple of them (shown one item a line)."""
    if isinstance(value, (list, tuple)):
        return all(isinstance(item, str) for item in value)
    return isinstance(value, str)


def _as_text(value: Any) -> str:
    return "; ".join(value) if isinstance(value, (list, tuple)) else value


def _text_columns(frame: pd.DataFrame) -> list[Any]:
    """The columns that hold text (object or string dtype): some str value, or lists of str throughout."""

    def holds_text(values: pd.Series) -> bool:
        present = [value for value in values if isinstance(value, (str, list, tuple))]
        return any(isinstance(value, str) for value in present) or (
            bool(present) and all(_is_text(value) for value in present)
        )

    return [
        column
        for column, dtype in frame.dtypes.items()
        if (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype))
        and holds_text(frame[column])
    ]


def _breakable(text: str) -> str:
    """`text` as HTML: escaped, its long words allowed to break after "/", "_" or "." (<wbr>)."""
    return " ".join(
        _BREAK_AFTER.sub(r"\1<wbr>", html.escape(word)) if len(word) > LONG_WORD else html.escape(word)
        for word in text.split(" ")
    )


def _readable_text(value: Any, fold_at: int) -> str:
    """`value` as HTML (`_breakable`); a text longer than `fold_at` as its start, unfolding to all of it;
    a list of texts one item a line."""
    if isinstance(value, (list, tuple)) and _is_text(value):
        return "<br>".join(_readable_text(item, fold_at) for item in value) or MISSING
    text = str(value)
    if len(text) <= fold_at:
        return _breakable(text)
    start = text[:fold_at].rsplit(" ", 1)[0]
    return f"<details><summary>{_breakable(start)} …</summary>{_breakable(text)}</details>"


def _is_prose(values: pd.Series) -> bool:
    """Whether a text column holds words to wrap: some text with a space, and long ones."""
    texts = [_as_text(value) for value in values if _is_text(value)]
    return any(" " in text for text in texts) and max(map(len, texts), default=0) > LONG_TEXT


def style_frame(frame: pd.DataFrame, fold_at: int = FOLD_AT) -> Styler:
    """`frame` as a pandas Styler that reads well in JupyterLab and in HTML exports: text columns
    left-aligned, a list of texts one item a line; a column of long prose wraps between `TEXT_WIDTHS`
    (never a one-word strip beside many columns); long words (paths, ids) and labels may break after
    "/", "_" or "."; a text longer than `fold_at` characters shows its start, the rest a click away (an
    HTML <details>); missing values (and empty lists) show as "—"; text is HTML-escaped. `frame` is not
    modified. Needs jinja2 (installed with the notebooks extra).

    >>> qd.style_frame(qd.flags_frame(qd.plan_device_map("Qwen/Qwen2.5-VL-7B-Instruct", 8, "24GiB")))
    """
    if not isinstance(frame, pd.DataFrame):
        raise InvalidArgumentError(
            f"style_frame takes a pandas DataFrame (any of the kit's frames); got {type(frame).__name__}."
        )
    if isinstance(fold_at, bool) or not isinstance(fold_at, int) or fold_at < 1:
        raise InvalidArgumentError(f"fold_at is a number of characters (an int >= 1); got {fold_at!r}.")
    try:
        styler = frame.style
    except ImportError as error:  # pandas' Styler renders with jinja2
        raise QwenVLDiagError(
            "Styled tables need jinja2 for pandas' Styler: pip install jinja2 (or qwenvl-diag[notebooks])."
        ) from error
    styler = styler.format(na_rep=MISSING)
    for axis in (0, 1):  # row and column labels: long names break too
        styler = styler.format_index(lambda label: _breakable(str(label)), axis=axis)
    text = _text_columns(frame)
    if not text:
        return styler
    styler = styler.format(lambda value: _readable_text(value, fold_at), subset=text, na_rep=MISSING)
    # words read from the left; numbers stay right-aligned
    styler = styler.set_properties(subset=text, **{"text-align": "left"})
    prose = [column for column in text if _is_prose(frame[column])]
    if prose:
        narrowest, widest = TEXT_WIDTHS
        styler = styler.set_properties(
            subset=prose, **{"white-space": "normal", "min-width": narrowest, "max-width": widest}
        )
    return styler


def _row_style(row: pd.Series) -> list[str]:
    style = f"background-color: {VERDICT_COLOURS[row['verdict']]}; color: {TEXT_COLOUR}"
    return [style] * len(row)


def style_verify(frame: pd.DataFrame) -> Styler:
    """`frame` (what `qd.verify` returns, or a selection of its rows and columns that keeps `verdict`)
    as a pandas Styler whose rows are coloured by verdict (`VERDICT_COLOURS`): green "fixed",
    grey-green "not needed", red "not fixed" and "breaks results". Text reads as in `style_frame`
    (missing values, e.g. no error or no logits because the run failed, show as "—"); the logit
    difference is in scientific notation. `frame` is not modified. Needs jinja2 (installed with the
    notebooks extra).

    >>> qd.style_verify(qd.verify(qd.Scenario.preset("seed-batched"), fix="single_device"))
    """
    if not isinstance(frame, pd.DataFrame) or "verdict" not in frame.columns:
        got = list(frame.columns) if isinstance(frame, pd.DataFrame) else type(frame).__name__
        raise InvalidArgumentError(
            "style_verify takes the frame of qd.verify(scenario, fix=...) (columns "
            f"{', '.join(VERIFY_COLUMNS)}), or a selection of it that keeps 'verdict'; got {got}."
        )
    unknown = sorted(set(frame["verdict"]) - set(VERDICTS), key=str)
    if unknown:
        raise InvalidArgumentError(
            f"style_verify: verdicts {unknown} are not qd.verify's ({', '.join(VERDICTS)}); pass the "
            "frame of qd.verify(scenario, fix=...)."
        )
    styler = style_frame(frame).apply(_row_style, axis=1)
    if "max_abs_logit_diff" in frame.columns:
        # a subset, not a {column: format} dict: that would reset every other column's format
        styler = styler.format("{:.1e}", subset=["max_abs_logit_diff"], na_rep=MISSING)
    return styler

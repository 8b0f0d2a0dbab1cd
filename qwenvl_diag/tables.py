"""`style_verify`: a `qd.verify` table with one background colour per verdict, green for a fix that
works and red for one that does not, for notebooks and HTML reports.

>>> report = qd.verify(qd.Scenario.preset("seed-video"), fix=["single_device", "rope_mask_hotfix"])
>>> qd.style_verify(report)                      # a pandas Styler: displays as a coloured table
>>> qd.style_verify(report[["fix", "verdict", "why"]]).to_html()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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


def _row_style(row: pd.Series) -> list[str]:
    style = f"background-color: {VERDICT_COLOURS[row['verdict']]}; color: {TEXT_COLOUR}"
    return [style] * len(row)


def style_verify(frame: pd.DataFrame) -> Styler:
    """`frame` (what `qd.verify` returns, or a selection of its rows and columns that keeps `verdict`)
    as a pandas Styler whose rows are coloured by verdict (`VERDICT_COLOURS`): green "fixed",
    grey-green "not needed", red "not fixed" and "breaks results". Missing values (no error, no
    logits because the run failed) show as "—", the logit difference in scientific notation, and
    text columns are left-aligned and wrap. `frame` is not modified. Needs jinja2 (installed with the
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
    try:
        styler = frame.style
    except ImportError as error:  # pandas' Styler renders with jinja2
        raise QwenVLDiagError(
            "style_verify needs jinja2 for pandas' Styler: pip install jinja2 (or qwenvl-diag[notebooks])."
        ) from error
    styler = styler.apply(_row_style, axis=1).format(na_rep="—")
    if "max_abs_logit_diff" in frame.columns:
        styler = styler.format({"max_abs_logit_diff": "{:.1e}"}, na_rep="—")
    text = [
        column
        for column, dtype in frame.dtypes.items()
        if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)
    ]
    if text:  # words read from the left; numbers stay right-aligned
        styler = styler.set_properties(subset=text, **{"text-align": "left", "white-space": "normal"})
    return styler

"""The worker's side of `workers.py`: the loop a side environment's Python runs, answering one command
after another (see `workers` for why). Kept apart from the client so that the kit's modules import each
other without a cycle: this loop runs the CLI, and the CLI's runs reach the client.
"""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys
import traceback

from .workers import ANSWER


def _command(request: dict) -> int:
    """Run one request, {"cli": argv} (`python -m qwenvl_diag.cli`) or {"script": path, "argv": argv}
    (`python path`), as `__main__`; its exit status."""
    if "script" in request:
        sys.argv = [request["script"], *request["argv"]]
        runpy.run_path(request["script"], run_name="__main__")
    else:
        sys.argv = ["qwenvl-diag", *request["cli"]]
        runpy.run_module("qwenvl_diag.cli", run_name="__main__", alter_sys=True)
    return 0


def serve() -> None:
    """The worker's loop (in the side environment): one JSON request per stdin line, one answer line
    ({"returncode", "stdout", "stderr"}) per request on stdout."""
    with contextlib.suppress(Exception):  # what a run imports, before the first request comes (an
        # import that fails here fails again in the request, which then reports it)
        import transformers.modeling_utils  # noqa: F401
        from transformers import AutoProcessor  # noqa: F401

        from . import fixes, placement, trace  # noqa: F401
        from .models import twin  # noqa: F401

    answers = sys.stdout
    for line in sys.stdin:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = _command(json.loads(line))
            except SystemExit as stop:  # argparse's or a script's way out
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except Exception:  # what a fresh process would print before exiting with 1
                traceback.print_exc()
                code = 1
        answer = {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
        answers.write(ANSWER + json.dumps(answer) + "\n")
        answers.flush()

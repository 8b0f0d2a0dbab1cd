"""Side-environment Pythons kept running between version-lab runs.

A run in a side environment is `qwenvl-diag doctor` run by that environment's Python. Started fresh for
each run, that Python pays its start and the imports of torch and transformers (seconds) every time;
a worker is that Python started once and handed one command line after another, so a cached
environment's second run costs what the scenario costs. Each command runs through the CLI's own
`main` with its output captured, and the answer is what a fresh process would have given (exit status,
stdout, stderr). The kit leaves the model, the inputs and torch's global state as they were after every
run, which is what makes reusing the process sound. At most `MAX_WORKERS` stay alive (the least
recently used is closed first); all are closed when the kit's Python exits.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import queue
import subprocess
import sys
import threading
import traceback
from collections import OrderedDict

from .errors import VersionLabError

MAX_WORKERS = 2
_ANSWER = "\x1eqwenvl-diag-worker "  # starts the line that carries an answer on the worker's stdout


def serve() -> None:
    """The worker's loop (in the side environment): one JSON list of CLI arguments per stdin line, one
    answer line per command ({"returncode", "stdout", "stderr"}) on stdout."""
    from . import cli

    answers = sys.stdout
    for line in sys.stdin:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(json.loads(line))
            except SystemExit as stop:  # argparse's way out
                code = stop.code if isinstance(stop.code, int) else 2
            except Exception:  # what a fresh process would print before exiting with 1
                traceback.print_exc()
                code = 1
        answer = {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
        answers.write(_ANSWER + json.dumps(answer) + "\n")
        answers.flush()


class _Worker:
    def __init__(self, python: str) -> None:
        code = "from qwenvl_diag.workers import serve; serve()"
        self.process = subprocess.Popen(
            [python, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # the commands' own stderr comes back in their answers
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)  # the worker ended

    def ask(self, argv: list[str], timeout: float) -> dict | None:
        """The answer to one command, or None when the worker died before answering."""
        self.process.stdin.write(json.dumps(argv) + "\n")
        self.process.stdin.flush()
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                return None
            if line.startswith(_ANSWER):
                return json.loads(line[len(_ANSWER) :])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_WORKERS: OrderedDict[str, _Worker] = OrderedDict()
_LOCK = threading.Lock()


def _worker(python: str) -> _Worker:
    worker = _WORKERS.pop(python, None)
    if worker is None or worker.process.poll() is not None:
        worker = _Worker(python)
    _WORKERS[python] = worker
    while len(_WORKERS) > MAX_WORKERS:
        _WORKERS.popitem(last=False)[1].close()
    return worker


def run_cli(python: str, argv: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    """`python -m qwenvl_diag.cli *argv`, answered by `python`'s worker; `what` names the run in the
    error raised when it takes longer than `timeout` seconds (the worker is then stopped)."""
    with _LOCK:
        worker = _worker(python)
        try:
            answer = worker.ask(argv, timeout)
        except (queue.Empty, BrokenPipeError) as error:
            _WORKERS.pop(python, None)
            worker.process.kill()
            worker.close()
            if isinstance(error, queue.Empty):
                raise VersionLabError(f"{what} ran longer than {timeout:.0f} s.") from error
            answer = None
        if answer is None:  # it died (killed, out of memory) before answering
            _WORKERS.pop(python, None)
            worker.close()
            status = worker.process.returncode
            answer = {
                "returncode": status if status not in (0, 1) else 2,
                "stdout": "",
                "stderr": f"The side environment's Python ended (exit status {status}) during {what}.",
            }
    return subprocess.CompletedProcess([python, "-m", "qwenvl_diag.cli", *argv], **answer)


@atexit.register
def close_all() -> None:
    """Close every worker (also run when the kit's Python exits)."""
    with _LOCK:
        while _WORKERS:
            _WORKERS.popitem()[1].close()

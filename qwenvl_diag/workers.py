"""Side-environment Pythons kept running between version-lab runs.

A run in a side environment is `qwenvl-diag doctor` run by that environment's Python. Started fresh for
each run, that Python pays its start and the imports of torch and transformers (seconds) every time;
a worker is that Python started once (it imports them as it starts) and handed one command after
another, so a cached environment's later runs cost what the scenario costs. A command is a CLI command
line, run through the CLI's own `main`, or a Python script run as `__main__`, with its output captured;
the answer is what a fresh process would have given (exit status, stdout, stderr). The kit leaves the
model, the inputs and torch's global state as they were after every run, which is what makes reusing
the process sound. At most `MAX_WORKERS` stay alive (the least recently used is let go first: it ends
after its current command); all are closed when the kit's Python exits.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import queue
import runpy
import subprocess
import sys
import threading
import traceback
from collections import OrderedDict

from .errors import VersionLabError

MAX_WORKERS = 2
_ANSWER = "\x1eqwenvl-diag-worker "  # starts the line that carries an answer on the worker's stdout


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
        self.lock = threading.Lock()  # one request at a time
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)  # the worker ended

    def ask(self, request: dict, timeout: float) -> dict | None:
        """The answer to one request, or None when the worker ended before answering."""
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                return None
            if line.startswith(_ANSWER):
                return json.loads(line[len(_ANSWER) :])

    def let_go(self) -> None:
        """No more requests: the worker ends once its current one is answered."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()


_WORKERS: OrderedDict[str, _Worker] = OrderedDict()
_LOCK = threading.Lock()  # guards _WORKERS


def start(python: str) -> None:
    """Start `python`'s worker now (it imports torch and transformers meanwhile), if not running."""
    _worker(python)


def _worker(python: str) -> _Worker:
    with _LOCK:
        worker = _WORKERS.pop(python, None)
        if worker is None or worker.process.poll() is not None:
            worker = _Worker(python)
        _WORKERS[python] = worker
        while len(_WORKERS) > MAX_WORKERS:
            _WORKERS.popitem(last=False)[1].let_go()
        return worker


def _forget(python: str, worker: _Worker) -> None:
    with _LOCK:
        if _WORKERS.get(python) is worker:
            del _WORKERS[python]


def _ask(python: str, request: dict, timeout: float, what: str) -> dict:
    worker = _worker(python)
    with worker.lock:
        try:
            answer = worker.ask(request, timeout)
        except queue.Empty as error:
            _forget(python, worker)
            worker.process.kill()
            raise VersionLabError(f"{what} ran longer than {timeout:.0f} s.") from error
        except BrokenPipeError:  # it had ended
            answer = None
    if answer is None:  # it ended (killed, out of memory) before answering
        _forget(python, worker)
        status = worker.process.wait()
        answer = {
            "returncode": status if status not in (0, 1) else 2,
            "stdout": "",
            "stderr": f"The side environment's Python ended (exit status {status}) during {what}.",
        }
    return answer


def run_cli(python: str, argv: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    """`python -m qwenvl_diag.cli *argv`, answered by `python`'s worker; `what` names the run in the
    error raised when it takes longer than `timeout` seconds (the worker is then stopped)."""
    answer = _ask(python, {"cli": argv}, timeout, what)
    return subprocess.CompletedProcess([python, "-m", "qwenvl_diag.cli", *argv], **answer)


def run_script(python: str, script: str, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """`python script *argv` (a file, run as `__main__`), answered by `python`'s worker."""
    answer = _ask(python, {"script": script, "argv": argv}, timeout, f"{script} under {python}")
    return subprocess.CompletedProcess([python, script, *argv], **answer)


@atexit.register
def close_all() -> None:
    """Let every worker go and wait for each to end (also run when the kit's Python exits)."""
    with _LOCK:
        workers = list(_WORKERS.values())
        _WORKERS.clear()
    for worker in workers:
        worker.let_go()
        try:
            worker.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()

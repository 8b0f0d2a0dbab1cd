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
import json
import queue
import subprocess
import threading
from collections import OrderedDict

from .errors import VersionLabError

MAX_WORKERS = 2
ANSWER = "\x1eqwenvl-diag-worker "  # starts the line that carries an answer on the worker's stdout


class _Worker:
    def __init__(self, python: str) -> None:
        code = "from qwenvl_diag.worker_loop import serve; serve()"  # the server side, by name
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
            if line.startswith(ANSWER):
                return json.loads(line[len(ANSWER) :])

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

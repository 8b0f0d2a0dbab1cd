"""The upstream report: for a catalogue entry that raises in the installed release (the open one on the
current stack), `qwenvl-diag report` writes the issue and a plain transformers + accelerate script; the
script, run on the kit's simulated GPUs against a saved twin of the checkpoint, fails at the entry's line."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import qwenvl_diag as qd
from qwenvl_diag import cli
from qwenvl_diag._compat import TRANSFORMERS_VERSION
from qwenvl_diag.bugs import CATALOGUE, find_in_source
from qwenvl_diag.explain.lines import line_index
from qwenvl_diag.presets import PRESETS
from qwenvl_diag.upstream import SCRIPT_INPUTS, _error_lines


def _reportable(bug) -> bool:
    preset = PRESETS[bug.scenario]
    return (
        bug.kind == "error"
        and bug.affects(TRANSFORMERS_VERSION)
        and preset.get("engine", "device_map") == "device_map"
        and preset["inputs"] in SCRIPT_INPUTS
        and not preset["model"].startswith("tiny/")
    )


REPORTABLE = [b for b in CATALOGUE if _reportable(b)]
# every open entry the installed release has (5.x), else a layout bug of the legacy stack's 4.51.3
ENTRIES = [b for b in REPORTABLE if b.fixed_in is None] or REPORTABLE[:1]
# runs a script as `python script.py` would, on the kit's simulated GPUs
RUNNER = (
    "import runpy, sys, qwenvl_diag as qd\n"
    "with qd.simulated_gpus(int(sys.argv[2]), sys.argv[3]):\n"
    "    runpy.run_path(sys.argv[1], run_name='__main__')\n"
)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda b: b.id)
def test_the_report_and_its_script_reproduce_the_entry_at_its_line(entry, tmp_path, capsys):
    script_file = tmp_path / "reproduce.py"
    assert cli.main(["report", entry.id, "--script", str(script_file)]) == 0
    report = capsys.readouterr().out
    path, line = find_in_source(entry)
    releases = sorted(line_index(), key=lambda r: tuple(map(int, r.split("."))))
    first = next(r for r in releases if entry.affects(r))
    before = releases[releases.index(first) - 1]
    assert report.startswith(f"# {entry.title}\n")
    assert f"first failing release {first}, {before} passes" in report
    assert f'modeling_{entry.families[0]}.py", line {line}, in {entry.function}' in report
    script = script_file.read_text()
    assert f"```python\n{script.rstrip()}\n```" in report
    assert "qwenvl_diag" not in script.split('"""', 2)[2]  # the script's code needs no kit
    verdicts = re.findall(r"^- `(\w+)` .*: \*\*(.+?)\*\*", report, re.M)
    assert verdicts and all(verdict == "fixed" for _, verdict in verdicts), verdicts

    preset = PRESETS[entry.scenario]
    model, processor = qd.twin(preset["model"])  # the checkpoint's module tree: its map applies name for name
    model.save_pretrained(tmp_path / "checkpoint")
    processor.save_pretrained(tmp_path / "checkpoint")
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(script_file), str(preset["gpus"]), preset.get("memory", "24GiB")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MODEL": str(tmp_path / "checkpoint")},
    )
    assert done.returncode != 0 and "passed" not in done.stdout, done.stderr[-3000:]
    frames = re.findall(r'File "([^"]+/transformers/[^"]+)", line (\d+), in (\w+)\n\s+(.+)', done.stderr)
    assert frames, done.stderr[-3000:]
    file, found, function, code = frames[-1]  # the library's last frame: where it raised
    assert file == str(path) and int(found) == line and function == entry.function, frames[-1]
    assert entry.quoted_in(code)
    assert "Expected all tensors to be on the same device" in done.stderr.splitlines()[-1]


def test_what_is_not_a_transformers_bug_or_cannot_be_written_out_is_said():
    usage = next(b for b in CATALOGUE if b.kind == "usage")
    with pytest.raises(qd.InvalidArgumentError, match="the calling code's mistake"):
        qd.upstream_report(usage.id)
    silent = next(b for b in CATALOGUE if b.kind == "silent")
    with pytest.raises(qd.InvalidArgumentError, match="raises nothing"):
        qd.upstream_report(silent.id)
    with pytest.raises(qd.InvalidArgumentError, match="No known bug 'nothing'"):
        qd.upstream_report("nothing")
    with pytest.raises(qd.InvalidArgumentError, match="fsdp2 engine"):
        qd.reproduction_script(qd.Scenario.preset("qwen3-vl-fsdp2-offload"))
    with pytest.raises(qd.InvalidArgumentError, match="'video' inputs"):
        qd.reproduction_script(qd.Scenario.preset("seed-video"))
    with pytest.raises(qd.InvalidArgumentError, match="takes a qd.Scenario"):
        qd.reproduction_script("seed-batched")
    passed = qd.run(qd.Scenario("tiny/qwen2_5_vl", gpus=1, memory="1GiB", inputs="text", inputs_on="model"))
    assert passed.ok and _error_lines(passed) == ["The kit's run did not reproduce it here: the run passed."]

"""`qwenvl-diag`, the kit's command line. `doctor` runs a scenario from the shell and prints its diagnosis;
`explain` reads a pasted error or traceback and says which known bug it is; `sweep` runs a grid of
scenarios and prints one row per scenario; `report` writes the issue for a catalogue entry (and its
reproduction as a plain transformers + accelerate script).

    qwenvl-diag doctor --model Qwen/Qwen2.5-VL-7B-Instruct --gpus 8 --strategy balanced \\
        --inputs batch --action generate --format markdown

`--transformers 4.51.3` (or `latest`) runs the same doctor under that release, in a cached side
environment of the version lab (`qd.run_in_versions`).

    qwenvl-diag explain traceback.txt --format markdown     # or: pbpaste | qwenvl-diag explain -

    qwenvl-diag sweep --model Qwen/Qwen2.5-VL-7B-Instruct --gpus 1 8 --inputs batch text \\
        --action generate --format csv

    qwenvl-diag report qwen3_vl-generate-split-vision-cpu-grid --script repro.py > issue.md

Exit status: doctor 0 when the run passed, 1 when it failed (the report says why); explain 0 when it
recognised a known bug, 1 when not (the reply says what would help); sweep 0 when every scenario
passed, 1 when any did not; report 0; 2 for bad options or files.

Each subcommand is a pair: `_add_<command>` declares its options, `_<command>` runs it. The parser (and
every `--help`) imports no torch: the modules that need it are imported when a subcommand runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .choices import ACTIONS, ALL_ACTIONS, ALL_INPUT_KINDS, DEVICE_MODES, ENGINES, INPUT_PLACES
from .errors import QwenVLDiagError
from .running import run
from .scenario import PRESETS, Scenario

FORMATS = ("markdown", "json", "text")
SWEEP_FORMATS = ("csv", "json", "markdown", "jsonl", "summary")


def _add_doctor(commands) -> None:
    doctor = commands.add_parser("doctor", help="run a scenario and print its diagnosis")
    doctor.set_defaults(handler=_doctor)
    # the fields' defaults, not Scenario(): making one checks its fixes against the catalogue (torch)
    defaults = argparse.Namespace(**{field.name: field.default for field in dataclasses.fields(Scenario)})
    doctor.add_argument("--preset", choices=sorted(PRESETS), help="start from a named scenario")
    doctor.add_argument("--scenario", help="a scenario as JSON (what Scenario.to_json writes), or @file.json")
    doctor.add_argument(
        "--model", help=f"shipped checkpoint, tiny/<family> or a directory ({defaults.model})"
    )
    doctor.add_argument("--gpus", type=int, help=f"number of GPUs ({defaults.gpus})")
    doctor.add_argument("--memory", help=f"memory per GPU ({defaults.memory})")
    doctor.add_argument(
        "--cpu-memory", help=f"host RAM the planner may offload to, e.g. 1024GiB ({defaults.cpu_memory})"
    )
    doctor.add_argument("--strategy", help="auto, balanced, balanced_low_0, sequential, or a JSON map")
    doctor.add_argument("--inputs", choices=ALL_INPUT_KINDS, help=f"input kind ({defaults.inputs})")
    doctor.add_argument(
        "--inputs-on",
        choices=INPUT_PLACES,
        help=f"inputs left on the CPU, or moved to model.device as model cards do ({defaults.inputs_on})",
    )
    doctor.add_argument(
        "--action", choices=ALL_ACTIONS, help=f"forward, generate or train_step ({defaults.action})"
    )
    doctor.add_argument(
        "--second-per-grid-ts", choices=("list", "tensor"), help="form of a video's timing input"
    )
    doctor.add_argument("--max-new-tokens", type=int, help=f"tokens to generate ({defaults.max_new_tokens})")
    doctor.add_argument(
        "--devices", choices=DEVICE_MODES, help=f"real or simulated GPUs ({defaults.devices})"
    )
    doctor.add_argument(
        "--transformers",
        help="run under this transformers release (e.g. 4.51.3, latest) in a cached side environment",
    )
    doctor.add_argument(
        "--engine",
        choices=ENGINES,
        help=f"device_map (accelerate) or fsdp2 (fully_shard) ({defaults.engine})",
    )
    doctor.add_argument(
        "--cpu-offload", action="store_true", default=None, help="fsdp2: CPUOffloadPolicy on every unit"
    )
    doctor.add_argument(
        "--host-buffers", action="store_true", default=None, help="fsdp2: non-persistent buffers on the host"
    )
    doctor.add_argument("--format", choices=FORMATS, default="text", help="report format (text)")


def _add_explain(commands) -> None:
    explain = commands.add_parser(
        "explain", help="say which known bug a pasted error or traceback is (no torch needed)"
    )
    explain.set_defaults(handler=_explain)
    explain.add_argument(
        "file", nargs="?", default="-", help="the pasted text: a file, or - for standard input (-)"
    )
    explain.add_argument("--format", choices=FORMATS, default="text", help="output format (text)")
    explain.add_argument(
        "--run",
        action="store_true",
        help="also reproduce the best candidate's scenario (in the version lab when the text reports "
        "another transformers release) and print its diagnosis",
    )


def _add_sweep(commands) -> None:
    sweep = commands.add_parser(
        "sweep", help="run a grid of scenarios (checkpoints x layouts x inputs x actions) and print a table"
    )
    sweep.set_defaults(handler=_sweep)
    sweep.add_argument(
        "--model", nargs="+", help="shipped checkpoints, tiny/<family> or directories (all shipped)"
    )
    sweep.add_argument("--gpus", nargs="+", type=int, help="numbers of GPUs (1 2 4 8)")
    sweep.add_argument("--memory", nargs="+", help="memory per GPU (24GiB 40GiB 80GiB)")
    sweep.add_argument(
        "--cpu-memory",
        nargs="+",
        help="host RAM the planner may offload to, e.g. 1024GiB (available: this machine's)",
    )
    sweep.add_argument(
        "--strategy", nargs="+", help="auto, balanced, balanced_low_0, sequential or JSON maps (all four)"
    )
    sweep.add_argument(
        "--inputs", nargs="+", choices=ALL_INPUT_KINDS, help="input kinds (image batch video text)"
    )
    sweep.add_argument(
        "--inputs-on",
        nargs="+",
        choices=INPUT_PLACES,
        help="inputs moved to model.device as model cards do, and/or left on the CPU (model)",
    )
    sweep.add_argument("--action", nargs="+", choices=ACTIONS, help="forward and/or generate (both)")
    sweep.add_argument(
        "--transformers", nargs="+", help="releases to run under (installed; e.g. installed 4.57.6 latest)"
    )
    sweep.add_argument("--processes", type=int, help="worker processes (one per core)")
    sweep.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run the grid as Ray tasks: on the cluster at ADDRESS, else $RAY_ADDRESS, else a local Ray "
        "(needs pip install 'qwenvl-diag[cluster]')",
    )
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.add_argument(
        "--format",
        choices=SWEEP_FORMATS,
        default="markdown",
        help="csv, json (a list of rows), markdown, jsonl (one row a line, as each finishes), or summary "
        "(the findings per release, as markdown: the tables of docs/findings.md) (markdown)",
    )


def _add_report(commands) -> None:
    report = commands.add_parser(
        "report", help="write the upstream issue for a catalogue entry, with a script that reproduces it"
    )
    report.set_defaults(handler=_report)
    report.add_argument("entry", help="a catalogue id (qwenvl-diag explain lists them; qd.known_bugs())")
    report.add_argument("--script", help="also write the reproduction script to this file")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qwenvl-diag", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _add_doctor(commands)
    _add_explain(commands)
    _add_sweep(commands)
    _add_report(commands)
    return parser


def _scenario(options: argparse.Namespace) -> Scenario:
    data = dict(PRESETS[options.preset]) if options.preset else {}
    if options.scenario:
        text = options.scenario
        if text.startswith("@"):
            with open(text[1:]) as handle:
                text = handle.read()
        data.update(json.loads(text))
    for field in (
        "model",
        "gpus",
        "memory",
        "cpu_memory",
        "inputs",
        "inputs_on",
        "action",
        "second_per_grid_ts",
        "max_new_tokens",
        "devices",
        "transformers",
        "engine",
        "cpu_offload",
        "host_buffers",
    ):
        value = getattr(options, field)
        if value is not None:
            data[field] = value
    if options.strategy is not None:
        data["strategy"] = (
            json.loads(options.strategy) if options.strategy.startswith("{") else options.strategy
        )
    return Scenario.from_dict(data)


def _text(diagnosis) -> str:
    notes = "".join(f"  note: {note}\n" for note in diagnosis.notes)
    if diagnosis.ok:
        return f"passed: {diagnosis.model} {diagnosis.action}, no device error.\n" + notes
    lines = [f"FAILED: {diagnosis.model} {diagnosis.action}", f"  {diagnosis.error_type}: {diagnosis.error}"]
    mismatch = diagnosis.first_mismatch
    if mismatch:
        lines += [
            f"  first mismatch: {mismatch['op']} on {mismatch['devices']} in module {mismatch['module']!r}",
            f"  at {mismatch['file']}:{mismatch['line']} ({mismatch['function']})",
            f"    {mismatch['code']}",
        ]
    lines += [
        f"  known bug: {bug['id']}: {bug['title']} (fixed in {bug['fixed_in']})"
        for bug in diagnosis.known_bugs
    ]
    lines += [f"  advice: {advice}" for advice in diagnosis.advice]
    return "\n".join(lines) + "\n" + notes


def _doctor(options: argparse.Namespace) -> int:
    return _print_diagnosis(run(_scenario(options)), options.format)


def _print_diagnosis(diagnosis, fmt: str) -> int:
    """Print the diagnosis in `fmt`; the exit status: 0 when the run passed, 1 when it failed."""
    render = {"markdown": diagnosis.to_markdown, "json": diagnosis.to_json, "text": lambda: _text(diagnosis)}
    sys.stdout.write(render[fmt]().rstrip("\n") + "\n")
    return 0 if diagnosis.ok else 1


def _reproduce(scenario_fields: dict, release: str | None, fmt: str) -> int:
    """Run the explanation's scenario, in the reported transformers release where it differs from the
    installed one; print its diagnosis."""
    fields = {k: v for k, v in scenario_fields.items() if k != "preset"}
    return _print_diagnosis(run(Scenario.from_dict({**fields, "transformers": release})), fmt)


def _explain(options: argparse.Namespace) -> int:
    from .explain import explain

    if options.file == "-":
        text = sys.stdin.read()
    else:
        with open(options.file, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    explanation = explain(text)
    render = {"markdown": explanation.to_markdown, "json": explanation.to_json, "text": explanation.to_text}
    sys.stdout.write(render[options.format]().rstrip("\n") + "\n")
    if options.run:
        if explanation.scenario is None:
            print("nothing to reproduce: no candidate with a scenario", file=sys.stderr)
        else:
            sys.stdout.flush()
            _reproduce(
                explanation.scenario, explanation.facts["versions"].get("transformers"), options.format
            )
    return 0 if explanation.recognised else 1


def _sweep(options: argparse.Namespace) -> int:
    from .sweep import SWEEP_COLUMNS, SWEEP_SUMMARY_COLUMNS, sweep, sweep_rows, sweep_summary

    strategies = options.strategy and [json.loads(s) if s.startswith("{") else s for s in options.strategy]
    axes = dict(
        models=options.model,
        gpus=options.gpus,
        memory=options.memory,
        strategies=strategies,
        inputs=options.inputs,
        inputs_on=options.inputs_on,
        cpu_memory=options.cpu_memory,
        actions=options.action,
        transformers=options.transformers,
        processes=options.processes,
        progress=not options.no_progress,
        cluster=None if options.ray is None else "ray",
        address=options.ray or None,
    )
    if options.format == "jsonl":  # each row as its run finishes (what a sweep in another release reads)
        frame = sweep(**axes, on_row=lambda row: print(json.dumps(row, default=str), flush=True))
    else:
        frame = sweep(**axes)
        if options.format == "csv":  # flags one cell: codes joined by ";"
            sys.stdout.write(frame.assign(flags=frame["flags"].map(";".join)).to_csv(index=False))
        elif options.format == "json":
            sys.stdout.write(json.dumps(sweep_rows(frame), indent=2, default=str) + "\n")
        elif options.format == "summary":
            from .report import markdown_table

            summary = sweep_summary(frame)
            sys.stdout.write(markdown_table(summary, SWEEP_SUMMARY_COLUMNS, max_rows=len(summary)) + "\n")
        else:
            from .report import markdown_table

            sys.stdout.write(markdown_table(frame, SWEEP_COLUMNS, max_rows=len(frame)) + "\n")
    if frame.attrs.get("interrupted"):
        print(f"interrupted: {len(frame)} rows done", file=sys.stderr)
    return 1 if (frame["outcome"] != "passed").any() else 0


def _report(options: argparse.Namespace) -> int:
    from .upstream import reproduction_script, upstream_report

    print(upstream_report(options.entry))
    if options.script:
        from .bugs import get_bug

        with open(options.script, "w") as handle:
            handle.write(reproduction_script(Scenario.preset(get_bug(options.entry).scenario)))
    return 0


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    try:
        return options.handler(options)
    except (QwenVLDiagError, json.JSONDecodeError, OSError) as error:
        print(f"qwenvl-diag: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

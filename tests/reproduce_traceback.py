"""The traceback of a catalogue scenario as the kit reproduces it: `python tests/reproduce_traceback.py
seed-batched` prints, as JSON, the frames ({file, line, function, code}, outermost first) and the error
line of the real library code raising on simulated GPUs, and exits 0 (1 when the scenario runs without
an error: a fixed release). It ends at the library line that raised, as on a real GPU, where the op
raises in C++: the simulator's and torch's Python frames below that line are left out."""

from __future__ import annotations

import json
import os
import sys
import traceback

import qwenvl_diag as qd
from qwenvl_diag.fixes import Setup, applying
from qwenvl_diag.scenario import devices_for, materials

MODELS = f"{os.sep}transformers{os.sep}models{os.sep}"


def reproduce(preset: str) -> dict | None:
    """The frames and error line of `preset`'s failure, or None when it runs without one."""
    scenario = qd.Scenario.preset(preset)
    model, source, plan, inputs = materials(scenario)
    with devices_for(scenario), applying(Setup(model, inputs, plan, source), []) as setup:
        try:
            if scenario.action == "generate":
                setup.model.generate(**setup.inputs, max_new_tokens=scenario.max_new_tokens, do_sample=False)
            else:
                setup.model(**setup.inputs)
        except RuntimeError as error:
            frames = traceback.extract_tb(error.__traceback__)
            last = max(i for i, frame in enumerate(frames) if MODELS in frame.filename)
            return {
                "frames": [
                    {"file": f.filename, "line": f.lineno, "function": f.name, "code": f.line}
                    for f in frames[: last + 1]
                ],
                "error": "".join(traceback.format_exception_only(error)).strip(),
            }
    return None


if __name__ == "__main__":
    failure = reproduce(sys.argv[1])
    print(json.dumps(failure))
    sys.exit(0 if failure else 1)

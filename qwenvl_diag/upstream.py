"""The issue a transformers maintainer can act on, for a catalogue entry: the versions, the reproduction as
a plain transformers + accelerate script (the entry's scenario written out, no kit needed), what the kit
got on simulated GPUs (the error, the library line), the first failing release and the fixes the kit
verified.

>>> print(qd.upstream_report("qwen3_vl-generate-split-vision-cpu-grid"))
>>> script = qd.reproduction_script(qd.Scenario.preset("seed-batched"))
"""

from __future__ import annotations

import json
import pprint

from packaging.version import Version

from .bugs import KnownBug, get_bug
from .errors import InvalidArgumentError
from .scenario import Scenario

# the input kinds a script writes out with the processor's own chat template (no qwen-vl-utils)
SCRIPT_INPUTS = ("image", "batch", "text")
_PROMPTS = {
    "image": [("Describe this image.", (2, 3))],
    "batch": [("Hi.", (2, 2)), ("What is in the top left corner, and why?", (3, 4))],
    "text": [("Write one sentence about GPUs.", None)],
}


def _script_refusal(scenario: Scenario) -> str | None:
    if scenario.engine != "device_map":
        return "the fsdp2 engine's ranks (a script of one process cannot be them)"
    if scenario.inputs not in SCRIPT_INPUTS:
        return f"{scenario.inputs!r} inputs (written out: {', '.join(SCRIPT_INPUTS)})"
    if scenario.model.startswith("tiny/"):
        return "a tiny model (it has no checkpoint on the Hub)"
    if scenario.fixes:
        return "a scenario with the kit's fixes applied"
    return None


class _Code(str):
    """Source text that `pprint` writes as it is (its repr), not as a quoted string."""

    def __repr__(self) -> str:
        return str(self)


def _messages(scenario: Scenario, patch_size: int) -> str:
    """The script's `conversations`: a list of chat conversations, each image drawn in the script."""
    unit = 2 * patch_size  # the processor keeps sides that are multiples of patch_size * merge_size
    conversations = []
    for text, sides in _PROMPTS[scenario.inputs]:
        content = [{"type": "text", "text": text}]
        if sides is not None:
            size = (sides[1] * unit, sides[0] * unit)  # PIL: width, height
            content.insert(0, {"type": "image", "image": _Code(f"Image.new('RGB', {size}, (200, 120, 40))")})
        conversations.append([{"role": "user", "content": content}])
    return pprint.pformat(conversations, width=100, sort_dicts=False)


def reproduction_script(scenario: Scenario, plan=None) -> str:
    """A Python script that runs `scenario` with transformers and accelerate alone, on real GPUs: the
    checkpoint loaded with the device map the kit planned for it (`plan`, default: planned here),
    the processor's chat template for the inputs, and the scenario's action. The model comes from the
    Hub, or from the directory in the environment variable MODEL. Images are drawn in the script.

    Written out: device_map scenarios of a shipped checkpoint, with image, batch or text inputs.
    """
    from .models.build import model_class
    from .models.catalog import checkpoint_config, resolve_checkpoint
    from .models.twin import checkpoint_family
    from .scenario import plan_scenario

    if not isinstance(scenario, Scenario):
        raise InvalidArgumentError(f"reproduction_script takes a qd.Scenario; got {type(scenario).__name__}.")
    refusal = _script_refusal(scenario)
    if refusal is not None:
        raise InvalidArgumentError(f"A reproduction script is not written for {refusal}.")
    checkpoint = resolve_checkpoint(scenario.model)
    family = checkpoint_family(checkpoint)
    if plan is None:
        plan = plan_scenario(scenario, checkpoint)
    import accelerate
    import transformers

    strategy = scenario.strategy if isinstance(scenario.strategy, str) else "an explicit map"
    device_map = pprint.pformat(dict(plan.device_map), width=100, sort_dicts=False)
    name = model_class(checkpoint_config(checkpoint)).__name__
    generate = scenario.action == "generate"
    call = f"model.generate(**inputs, max_new_tokens={scenario.max_new_tokens}, do_sample=False)"
    move = (
        "inputs = inputs.to(model.device)  # as the model card does"
        if scenario.inputs_on == "model"
        else "# the inputs stay on the CPU, where the processor made them: accelerate's hooks move them"
    )
    batch = scenario.inputs == "batch"
    padding = '\n    padding=True,\n    padding_side="left",' if batch else ""
    versions = f"transformers {transformers.__version__} + accelerate {accelerate.__version__}"
    memory = f"max_memory={{0..{scenario.gpus - 1}: {scenario.memory!r}}}"
    loading = f"device_map=DEVICE_MAP, {_dtype_keyword()}=torch.bfloat16"
    needs = f"torch, transformers, accelerate and Pillow, {scenario.gpus} GPUs"
    what = f"{checkpoint}, {scenario.action}() on {scenario.inputs} inputs"
    return f'''"""Reproduce on {scenario.gpus} GPUs: {what}.

Written by qwenvl-diag {_kit_version()} from its scenario
{json.dumps(scenario.to_dict(), default=str)}
Needs {needs} (MODEL=<directory> loads a local copy).
"""

import os

import torch
from PIL import Image
from transformers import AutoProcessor, {name}

MODEL = os.environ.get("MODEL", {checkpoint!r})
# the map {versions} plan for this checkpoint with
# device_map={strategy!r}, {memory}
# (written out, so that the layout does not depend on the planner's release)
DEVICE_MAP = {device_map}

model = {name}.from_pretrained(
    MODEL, {loading}, attn_implementation={scenario.attn_implementation!r}
)
model.eval()
processor = AutoProcessor.from_pretrained(MODEL)
conversations = {_messages(scenario, family.patch_size)}
inputs = processor.apply_chat_template(
    conversations{"" if batch else "[0]"},
    add_generation_prompt=True,
    tokenize=True,
    return_dict=True,
    return_tensors="pt",{padding}
)
{move}
with torch.no_grad():
    {call if generate else "model(**inputs)"}
print("passed")
'''


def _dtype_keyword() -> str:
    from ._compat import transformers_at_least

    return "dtype" if transformers_at_least("4.56.0") else "torch_dtype"


def _kit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qwenvl-diag")
    except PackageNotFoundError:
        return "(source tree)"


def _releases_around(bug: KnownBug) -> tuple[str | None, str, str]:
    """(the last release before the entry's range or None, its first, its newest) among the releases the
    kit has indexed; the kit's error when none of them is in the range."""
    from .explain.lines import line_index

    releases = sorted(line_index(), key=Version)
    inside = [r for r in releases if bug.affects(r)]
    if not inside:
        raise InvalidArgumentError(f"No release the kit has indexed is in {bug.id}'s range {bug.affected}.")
    before = [r for r in releases if Version(r) < Version(inside[0])]
    return (before[-1] if before else None), inside[0], inside[-1]


def _verified(bug: KnownBug, scenario: Scenario) -> list[str]:
    """One line per in-process fix of the entry: its title and `qd.verify`'s verdict on the scenario."""
    from .fixes import fixes_for
    from .verify import verify

    names = [fix.name for fix in fixes_for(bug.id) if fix.stage != "environment"]
    if not names:
        return []
    frame = verify(scenario, fix=names)
    titles = {fix.name: fix.title for fix in fixes_for(bug.id)}
    return [
        f"- `{row.fix}` ({titles[row.fix]}): **{row.verdict}**. {row.why}"
        for row in frame.itertuples(index=False)
    ]


def upstream_report(bug: str | KnownBug) -> str:
    """The issue for catalogue entry `bug` (a transformers bug that raises, `kind` "error"), in Markdown:
    versions, the reproduction script, the error and library line the kit got on simulated GPUs (run
    here when the installed release is affected, else in the newest affected release's side
    environment), the first failing release, and the fixes the kit verified (here, when affected).

    >>> print(qd.upstream_report("qwen3_vl-generate-split-vision-cpu-grid"))
    """
    from ._compat import TRANSFORMERS_VERSION
    from .running import run

    bug = get_bug(bug) if isinstance(bug, str) else bug
    if not isinstance(bug, KnownBug):
        raise InvalidArgumentError(
            f"upstream_report takes a catalogue id or entry; got {type(bug).__name__}."
        )
    if bug.kind != "error":
        raise InvalidArgumentError(
            f"{bug.id} is a {bug.kind} entry: "
            + (
                "the calling code's mistake, not a transformers bug (see its workaround)."
                if bug.kind == "usage"
                else "it raises nothing, so there is no traceback to report; its trigger says what to show."
            )
        )
    last_good, first_bad, newest = _releases_around(bug)
    here = bug.affects(TRANSFORMERS_VERSION)
    scenario = Scenario.preset(bug.scenario, transformers=None if here else newest)
    diagnosis = run(scenario)
    environment = diagnosis.environment
    try:
        script = reproduction_script(Scenario.preset(bug.scenario))
    except InvalidArgumentError as error:
        script = f"# {error} Run it with qwenvl-diag: qwenvl-diag doctor --preset {bug.scenario}"
    lines = [
        f"# {bug.title}",
        "",
        f"**Releases**: fails on transformers `{bug.affected}`"
        + (
            f" (fixed in {bug.fixed_in})"
            if bug.fixed_in
            else ", still failing on the newest the kit has seen"
        )
        + (f"; first failing release {first_bad}, {last_good} passes" if last_good else "")
        + ".",
        f"**Seen with**: transformers {environment.get('transformers')}, accelerate "
        f"{environment.get('accelerate')}, torch {environment.get('torch')} (GPUs simulated by qwenvl-diag, "
        "which runs the real library code and raises what CUDA raises).",
        "",
        "## What happens",
        "",
        bug.trigger,
        "",
        "## Reproduction (transformers + accelerate only)",
        "",
        "```python",
        script.rstrip(),
        "```",
        "",
        "## The error",
        "",
        *_error_lines(diagnosis),
        "",
    ]
    verified = _verified(bug, scenario) if here else []
    lines += ["## Workarounds", "", bug.workaround, ""]
    if verified:
        lines += ["Verified by the kit against a single-device reference (same logits and tokens):", ""]
        lines += [*verified, ""]
    lines += ["## References", "", *(f"- {ref}" for ref in bug.references), ""]
    return "\n".join(lines)


def _error_lines(diagnosis) -> list[str]:
    """The error and the library frame where devices mixed, or what the run did instead."""
    from .report import short_path

    mismatch = diagnosis.first_mismatch
    if diagnosis.error is None or mismatch is None:
        return [f"The kit's run did not reproduce it here: {diagnosis.error or 'the run passed'}."]
    return [
        "```",
        f"{diagnosis.error_type}: {diagnosis.error}",
        f'  File "{short_path(mismatch["file"])}", line {mismatch["line"]}, in {mismatch["function"]}',
        f"    {mismatch['code'].strip()}",
        "```",
        "",
        f"The op that mixed devices: `{mismatch['op']}` on {mismatch['devices']}.",
    ]

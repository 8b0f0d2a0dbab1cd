"""explain: a pasted failure -> facts, the catalogue entries it points to, the scenario, a reply.

The tracebacks explained are the kit's own reproductions of each catalogue entry that has a scenario
(`tests/reproduce_traceback.py`, the real transformers 4.51.3 code raising on simulated GPUs), rendered
the ways users paste them: plain Python, IPython (>= 8 and older), torchrun's `[rank3]:` prefixes, logging
prefixes, colour codes, Windows paths, frames cut. Explaining them is pure text, the same in both stacks,
so those tests run in the legacy stack, where 4.51.3 raises in this process; `--run` and the line index
against the installed source run in both. Unrelated failures must match nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import qwenvl_diag as qd
from qwenvl_diag._compat import TRANSFORMERS_VERSION
from qwenvl_diag.bugs import CATALOGUE, KNOWN_BUG_COLUMNS
from qwenvl_diag.explain import ANSWER_KEYS, FACT_KEYS, read_facts
from qwenvl_diag.explain.pins import PINNING, pins
from qwenvl_diag.explain.text import as_printed, unfolded
from qwenvl_diag.explain.tools import tools_in
from qwenvl_diag.models.families import FAMILIES
from qwenvl_diag.presets import PRESETS

REPO = Path(__file__).resolve().parents[1]
LAB_CACHE = REPO / "test-output"  # the version lab's side environments, shared with test_versions
RELEASE = "4.51.3"  # the last release with both seed bugs (BUG_FACTS.md)
# the entries whose scenario raises on RELEASE (the others: test_every_entry_is_explained_from_its_own_line)
REPRODUCED = [
    bug
    for bug in CATALOGUE
    if bug.signature is not None
    and bug.affects(RELEASE)
    and Version(RELEASE) >= Version(FAMILIES[bug.families[0]].since)
]
RAISING = [bug for bug in CATALOGUE if bug.signature is not None]
ESC = "\x1b"


@pytest.fixture(scope="module")
def reproductions() -> dict[str, dict]:
    """Each reproducible entry's failure on transformers 4.51.3: {"frames": [...], "error": "..."}. The
    tests that explain them read text alone, the same in either stack, so they run once: in the legacy
    stack, where 4.51.3 is installed and raises in this process (the current stack would make each in the
    version lab's 4.51.3, a minute for the same texts)."""
    if str(TRANSFORMERS_VERSION) != RELEASE:
        pytest.skip(f"explains transformers {RELEASE}'s tracebacks, pure text: run in the legacy stack")
    from reproduce_traceback import reproduce

    return {bug.id: reproduce(bug.scenario) for bug in REPRODUCED}


def _plain(failure: dict) -> str:
    lines = ["Traceback (most recent call last):"]
    for frame in failure["frames"]:
        lines += [
            f'  File "{frame["file"]}", line {frame["line"]}, in {frame["function"]}',
            f"    {frame['code']}",
        ]
    return "\n".join(lines + [failure["error"]])


def _ipython(failure: dict) -> str:
    """IPython >= 8: `Cell In[..]`, `File path:line, in function(...)` and `->` arrows."""
    lines = ["-" * 75, f"RuntimeError{' ' * 30}Traceback (most recent call last)", "Cell In[7], line 3"]
    lines += [
        "      1 inputs = processor(text=texts, images=images, return_tensors='pt')",
        "----> 3 out = run()",
    ]
    for frame in failure["frames"][1:]:
        number = frame["line"]
        lines += ["", f"File {frame['file']}:{number}, in Model.{frame['function']}(self, *args, **kwargs)"]
        lines += [
            f"   {number - 1} previous = line",
            f"-> {number} {frame['code']}",
            f"   {number + 1} next = line",
        ]
    return "\n".join(lines + ["", failure["error"]])


def _old_ipython(failure: dict) -> str:
    """IPython 7: `path in function(args)` and `--->` arrows."""
    lines = [f"RuntimeError{' ' * 30}Traceback (most recent call last)"]
    for frame in failure["frames"]:
        lines += [
            f"{frame['file']} in {frame['function']}(self, input_ids)",
            f"--> {frame['line']} {frame['code']}",
            "",
        ]
    return "\n".join(lines + [failure["error"]])


def _prefixed(prefix: str):
    return lambda failure: "\n".join(prefix + line for line in _plain(failure).splitlines())


def _windows(failure: dict) -> str:
    """Another machine: a Windows interpreter's paths."""
    site = "C:\\Users\\bob\\miniconda3\\envs\\vl\\Lib\\site-packages\\"

    def windows(path: str) -> str:
        if "site-packages/" in path:
            return site + path.split("site-packages/", 1)[1].replace("/", "\\")
        return "C:\\Users\\bob\\work\\" + Path(path).name

    return _plain({**failure, "frames": [{**f, "file": windows(f["file"])} for f in failure["frames"]]})


def _coloured(failure: dict) -> str:
    """Colour codes, as a terminal with rich tracebacks copies them."""
    return "\n".join(f"{ESC}[31m{line}{ESC}[0m" for line in _plain(failure).splitlines())


def _rich(failure: dict) -> str:
    """rich's boxed traceback (`accelerate launch`, typer): `path:line in function`, long paths wrapped
    at the box's width (narrow here: each frame's line wraps two or more times, wherever the paths
    are), the line that ran marked `❱` with indentation guides in the code."""
    width = 37

    def boxed(text: str) -> str:
        return f"│ {text:<{width}} │"

    lines = ["╭" + "─" * (width + 2) + "╮"]
    for frame in failure["frames"]:
        where = f"{frame['file']}:{frame['line']} in {frame['function']}"
        # as rich wraps: words kept whole where they fit, a long path folded
        lines += [boxed(part) for part in textwrap.wrap(where, width, break_on_hyphens=False)]
        number = frame["line"]
        lines += [boxed(""), boxed(f"  {number - 1} │   │   previous = line")]
        lines += [boxed(f"❱ {number} │   │   {frame['code']}"), boxed("")]
    return "\n".join(lines + ["╰" + "─" * (width + 2) + "╯", failure["error"]])


def _cut(failure: dict) -> str:
    """Only the last frame and the error, and a release in words."""
    return _plain({**failure, "frames": failure["frames"][-1:]}) + f"\nI am on transformers {RELEASE}"


FORMATS = {
    "plain": _plain,
    "ipython": _ipython,
    "old-ipython": _old_ipython,
    "torchrun": _prefixed("[rank3]: "),
    "logging": _prefixed("2025-05-02 10:11:12,345 - root - ERROR - "),
    "windows": _windows,
    "colour": _coloured,
    "rich": _rich,
    "cut": _cut,
}
VERSIONS = f"transformers=={RELEASE}\naccelerate==1.6.0\ntorch==2.6.0+cu124\n"


@pytest.mark.parametrize("form", sorted(FORMATS))
@pytest.mark.parametrize("bug", REPRODUCED, ids=[bug.id for bug in REPRODUCED])
def test_the_kits_reproduction_is_explained_in_every_form(reproductions, bug, form):
    failure = reproductions[bug.id]
    text = FORMATS[form](failure) + ("" if form == "cut" else "\n" + VERSIONS)
    result = qd.explain(text)
    assert result.recognised and result.best["id"] == bug.id, (form, result.candidates, text[-1500:])
    facts, raised = result.facts, failure["frames"][-1]
    assert facts["error"] == failure["error"], facts["error"]
    assert facts["error_kind"] == "device" and facts["device_pair"] == bug.signature.devices
    assert (
        facts["library_frame"]["line"] == raised["line"]
        and facts["library_frame"]["function"] == raised["function"]
    )
    assert facts["library_frame"]["code"] == raised["code"].strip()
    assert facts["family"] == bug.families[0] and facts["versions"]["transformers"] == RELEASE
    assert ("torchrun" in facts["engine"]) == (form == "torchrun")  # told by the "[rank3]:" prefixes alone
    assert result.scenario == {"preset": bug.scenario, **PRESETS[bug.scenario]}
    assert f"**{bug.id}**" in result.reply
    if bug.fixed_in:
        assert f"fixed in {bug.fixed_in}" in result.reply
    else:  # a usage error has no fix release: the reply says what to do instead
        assert "known usage error" in result.reply and bug.workaround in result.reply


def test_the_traceback_of_a_fixed_release_says_so(reproductions):
    bug = REPRODUCED[0]
    text = _plain(reproductions[bug.id]) + "\ntransformers==4.52.4"
    best = qd.explain(text).best
    assert best["id"] == bug.id  # the same line, but ...
    assert any("is not affected" in reason for reason in best["against"]), best["against"]
    assert qd.explain(_plain(reproductions[bug.id]) + "\n" + VERSIONS).best["score"] > best["score"]


@pytest.mark.parametrize("bug", REPRODUCED, ids=[bug.id for bug in REPRODUCED])
def test_partial_text_a_quoted_code_line_and_the_error(reproductions, bug):
    failure = reproductions[bug.id]
    text = f"my code fails with {failure['error']}\nat this line:\n    {bug.code}\n(transformers {RELEASE})"
    result = qd.explain(text)
    # a line several families share (the same code in each family's file) names all of them, tied
    sharing = {other.id for other in REPRODUCED if other.code == bug.code}
    assert result.best["id"] in sharing and bug.id in [c["id"] for c in result.candidates], result.candidates
    assert result.facts["frames"] == [] and result.facts["library_frame"] is None


def test_an_error_line_alone_names_its_devices_op_and_argument_in_both_torch_wordings():
    old = (
        "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, "
        "cuda:1 and cuda:0! (when checking argument for argument "
        "mask in method wrapper_CUDA__masked_scatter_)"
    )
    new = (
        "RuntimeError: Expected all tensors to be on the same device, but got mask is on cuda:1, different "
        "from other tensors on cuda:0 (when checking argument in method wrapper_CUDA__masked_scatter_)"
    )
    for text, wording in ((old, "found at least two devices"), (new, "but got ... is on")):
        facts = read_facts(text + "\ntransformers 4.45.2")
        assert (facts["op"], facts["argument"], facts["wrapper"]) == (
            "masked_scatter_",
            "mask",
            "wrapper_CUDA__masked_scatter_",
        )
        assert facts["devices"] == ["cuda:1", "cuda:0"] and facts["device_pair"] == "gpu/gpu"
        assert facts["torch_wording"] == wording and facts["versions"] == {"transformers": "4.45.2"}
        assert set(facts) == set(FACT_KEYS)


@pytest.mark.parametrize(
    ("text", "kind", "devices", "pair"),
    [
        (
            "RuntimeError: Expected all tensors to be on the same "
            "device, but got index is on cpu, different from "
            "other tensors on npu:0 (when checking argument in method wrapper_NPU__index_select)",
            "device",
            ["cpu", "npu:0"],
            "gpu/cpu",
        ),
        (
            "RuntimeError: Expected all tensors to be on the same "
            "device, but found at least two devices, xpu:1 "
            "and xpu:0!",
            "device",
            ["xpu:1", "xpu:0"],
            "gpu/gpu",
        ),
        (
            "RuntimeError: Input type (CUDABFloat16Type) and weight type "
            "(CPUBFloat16Type) should be the same",
            "type",
            ["cuda", "cpu"],
            "gpu/cpu",
        ),
        (
            "RuntimeError: indices should be either on cpu or on the "
            "same device as the indexed tensor (cuda:0)",
            "index",
            ["cuda:0"],
            "gpu/gpu",
        ),
        (
            "RuntimeError: expected self and mask to be on the same "
            "device, but got mask on cuda:0 and self on cuda:1",
            "masked_fill",
            ["cuda:0", "cuda:1"],
            "gpu/gpu",
        ),
        (
            # unslothai/unsloth#4066: torch.compile's fake tensors in older torch, inside dynamo's own error
            "torch._dynamo.exc.TorchRuntimeError: Dynamo failed to run FX node with fake tensors: "
            "call_function <built-in function add>(...): got RuntimeError('Unhandled FakeTensor Device "
            "Propagation for aten.add.Tensor, found two different devices cuda:1, cuda:0')",
            "device",
            ["cuda:1", "cuda:0"],
            "gpu/gpu",
        ),
    ],
    ids=["npu-index-select", "xpu", "conv-types", "indexing", "masked-fill", "fake-tensor"],
)
def test_every_device_error_wording_is_read(text, kind, devices, pair):
    facts = read_facts(text)
    assert (facts["error_kind"], facts["devices"], facts["device_pair"]) == (kind, devices, pair)
    # and each wording says its op: the wrapper's (a PrivateUse1 device's too), the ATen name's, else the
    # wording's own
    op = {"device": None, "type": "convolution", "index": "index", "masked_fill": "masked_fill"}[kind]
    named = "index_select" if "index_select" in text else "add" if "aten.add" in text else op
    assert facts["op"] == named


def test_a_device_error_told_in_words_or_by_its_wrapper_is_a_device_error_with_no_devices():
    told = read_facts(
        "Qwen2.5-VL 7B, transformers 4.51.3: tensors are not on the same device in batch inference"
    )
    assert (told["error_kind"], told["devices"], told["family"]) == ("device", [], "qwen2_5_vl")
    assert told["inputs"] == ["batch"]
    wrapper = read_facts("the M-RoPE matmul raises a CUDA-vs-CPU `wrapper_CUDA_bmm` mismatch in Qwen3VL")
    assert (wrapper["error_kind"], wrapper["op"]) == ("device", "bmm")


def test_a_range_a_class_name_and_the_action_are_read():
    facts = read_facts(
        '"transformers>=4.57.1",\nmodel = Qwen2VLForConditionalGeneration.from_pretrained(...)'
        "  # a Qwen2.5-VL blog post\nout = model.generate(**inputs)"
    )
    assert facts["transformers_range"] == ">=4.57.1" and facts["versions"] == {}
    assert facts["family"] == "qwen2_vl"  # the class in the code outranks the prose
    assert facts["action"] == "inference"
    training = read_facts("[rank0]: trainer.train()\n[rank0]: loss.backward()")
    assert training["action"] == "training"


def test_tools_are_read_from_frames_words_and_version_lists():
    text = (
        'File "/usr/lib/python3.10/site-packages/awq/quantize/quantizer.py", line 2, in quantize\n'
        'File "/usr/lib/python3.10/site-packages/transformers/models/qwen2_vl/modeling_qwen2_vl.py", '
        "line 1, in forward\n- DeepSpeed version: not installed\n- vllm: 0.11.0\nI use ComfyUI"
    )
    tools = {tool["tool"]: tool["where"] for tool in read_facts(text)["tools"]}
    # not installed is no mention; a version in a list is installed, not used
    assert tools == {"autoawq": "called", "vllm": "listed", "comfyui": "named"}
    assert read_facts(text)["engine"] == []  # nor is either an engine the text ran
    # unless the text speaks of what the tool does
    serving = read_facts("- vllm: 0.11.0\nwe serve Qwen2.5-VL with it")["tools"]
    assert [(tool["tool"], tool["where"]) for tool in serving] == [("vllm", "named")]


def test_a_dtype_mismatch_on_one_device_is_not_a_device_error():
    facts = read_facts(
        "RuntimeError: Input type (CUDAFloatType) and weight type (CUDABFloat16Type) should be the same"
    )
    assert facts["error_kind"] == "other"


ENVIRONMENTS = {
    "transformers env": (
        "- `transformers` version: 4.45.0.dev0\n- Platform: Linux\n- Python version: 3.10.14\n"
        "- PyTorch version (GPU?): 2.4.1+cu121 (True)\n- Accelerate version: 0.34.2\n"
        "- Using distributed or parallel set-up in script?: yes, device_map auto\n",
        {"transformers": "4.45.0.dev0", "torch": "2.4.1+cu121", "accelerate": "0.34.2"},
        "3.10",
    ),
    "pip list": (
        "Package        Version\n-------------- -----------\naccelerate     1.2.1\nqwen-vl-utils  0.0.8\n"
        "torch          2.5.1\ntransformers   4.47.1\n",
        {"transformers": "4.47.1", "torch": "2.5.1", "accelerate": "1.2.1", "qwen-vl-utils": "0.0.8"},
        None,
    ),
    "collect_env": (
        "PyTorch version: 2.6.0+cu124\nPython version: 3.12.3 (main) [GCC 11.4.0] (64-bit runtime)\n"
        "GPU models and configuration:\nGPU 0: NVIDIA H100 80GB HBM3\nGPU 1: NVIDIA H100 80GB HBM3\n"
        "[pip3] torch==2.6.0\n[pip3] transformers==4.50.0\n",
        {"torch": "2.6.0", "transformers": "4.50.0"},
        "3.12",
    ),
}


@pytest.mark.parametrize("name", sorted(ENVIRONMENTS))
def test_versions_python_and_gpus_from_environment_reports(name):
    text, expected, python = ENVIRONMENTS[name]
    facts = read_facts(text)
    assert facts["versions"] == expected and facts["python"] == python
    if name == "collect_env":
        assert facts["gpus"] == {"count": 2, "type": "NVIDIA H100 80GB HBM3"}


def test_shell_lines_paths_source_builds_and_engines():
    text = (
        "CUDA_VISIBLE_DEVICES=0,1,2,3 torchrun --nproc_per_node=4 train.py\n"
        "pip install git+https://github.com/huggingface/transformers@4a1b2c3d4e5f\n"
        '  File "/usr/local/lib/python3.9/site-packages/deepspeed/runtime/engine.py", line 10, in forward\n'
        "    loss = self.module(*inputs)\n"
        "model = Qwen3VLForConditionalGeneration.from_pretrained('Qwen/Qwen3-VL-8B-Instruct')\n"
    )
    facts = read_facts(text)
    assert facts["gpus"]["count"] == 4 and facts["python"] == "3.9"
    assert facts["transformers_ref"] == "4a1b2c3d4e5f"
    assert facts["checkpoint"] == "Qwen/Qwen3-VL-8B-Instruct" and facts["family"] == "qwen3_vl"
    assert {"torchrun", "deepspeed"} <= set(facts["engine"])


UNRELATED = {
    "out of memory": (
        'Traceback (most recent call last):\n  File "/x/site-packages/transformers/models/qwen2_5_vl/'
        'modeling_qwen2_5_vl.py", line 1334, in _prepare_4d_causal_attention_mask_with_cache_position\n'
        "    diagonal_attend_mask = torch.arange(target_length, "
        "device=device) > cache_position.reshape(-1, 1)\n"
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\ntransformers==4.51.3\n"
    ),
    "shape": (
        'Traceback (most recent call last):\n  File "/x/site-packages/transformers/models/qwen2_5_vl/'
        'modeling_qwen2_5_vl.py", line 300, in forward\n    x = self.proj(x)\n'
        "RuntimeError: mat1 and mat2 shapes cannot be multiplied (4x8 and 16x8)\n"
    ),
    "another model": (
        "Traceback (most recent call last):\n  File "
        '"/x/site-packages/transformers/models/llama/modeling_llama.py",'
        " line 120, in forward\n    diagonal_attend_mask = torch.arange(target_length, device=device) > "
        "cache_position.reshape(-1, 1)\nRuntimeError: Expected all "
        "tensors to be on the same device, but found "
        "at least two devices, cuda:1 and cuda:0!\ntransformers==4.51.3\n"
    ),
    "nothing": "hello, my model is slow, any idea?",
    "empty": "",
}


@pytest.mark.parametrize("name", sorted(UNRELATED))
def test_unrelated_text_is_not_matched_and_says_what_would_help(name):
    result = qd.explain(UNRELATED[name])
    assert not result.recognised and result.candidates == [] and result.scenario is None
    assert result.reply.startswith("Not recognised") and "What would help" in result.reply


def test_the_json_shape_is_stable(reproductions):
    bug = REPRODUCED[0]
    data = json.loads(qd.explain(_plain(reproductions[bug.id]) + "\n" + VERSIONS).to_json())
    assert (
        list(data) == list(qd.EXPLAIN_KEYS) == ["facts", "answer", "candidates", "scenario", "reply", "notes"]
    )
    assert data["notes"] == []  # 4.51.3 is indexed
    assert set(data["facts"]) == set(FACT_KEYS)
    assert list(data["answer"]) == list(ANSWER_KEYS)
    assert data["answer"]["label"] == bug.id and data["answer"]["confidence"] == "high"
    extra = {"score", "evidence", "against", "confirm", "tier", "confidence", "tied"}
    for candidate in data["candidates"]:
        assert set(KNOWN_BUG_COLUMNS) | extra == set(candidate)
    assert qd.Scenario.from_dict({k: v for k, v in data["scenario"].items() if k != "preset"}) == (
        qd.Scenario.preset(bug.scenario)
    )


def test_explain_refuses_what_is_not_text():
    with pytest.raises(qd.InvalidArgumentError, match="explain takes the pasted text as a str"):
        qd.explain(None)


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    probe = (
        "import sys\nfrom qwenvl_diag.cli import main\ncode = main(sys.argv[1:])\n"
        "print('imported:', sorted(m for m in ('torch', "
        "'transformers') if m in sys.modules), file=sys.stderr)\n"
        "sys.exit(code)"
    )
    return subprocess.run(
        [sys.executable, "-c", probe, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_the_cli_explains_from_stdin_and_files_without_torch(reproductions, tmp_path):
    bug = REPRODUCED[0]
    text = _ipython(reproductions[bug.id]) + "\n" + VERSIONS
    done = _cli("explain", "-", "--format", "json", stdin=text)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["candidates"][0]["id"] == bug.id
    assert "imported: []" in done.stderr  # neither torch nor transformers
    path = tmp_path / "report.txt"
    path.write_text(text)
    done = _cli("explain", str(path), "--format", "markdown")
    assert done.returncode == 0 and f"**{bug.id}**" in done.stdout, done.stderr
    done = _cli("explain", "-", stdin=UNRELATED["shape"])
    assert done.returncode == 1 and "Not recognised" in done.stdout
    done = _cli("explain", str(tmp_path / "missing.txt"))
    assert done.returncode == 2 and "qwenvl-diag:" in done.stderr


def test_explain_run_reproduces_the_best_candidate(monkeypatch, capsys, tmp_path):
    """Both stacks: here on 4.51.3, in the version lab's 4.51.3 on the current one."""
    from qwenvl_diag.cli import main
    from qwenvl_diag.explain.lines import line_in

    monkeypatch.setenv("QWENVL_DIAG_CACHE", str(LAB_CACHE))
    bug = next(b for b in REPRODUCED if b.scenario == "seed-video")  # the quicker run
    frame = f'  File "/opt/conda/lib/python3.10/site-packages/transformers/{bug.file}", line '
    path = tmp_path / "report.txt"
    path.write_text(
        f"Traceback (most recent call last):\n{frame}{line_in(bug.id, RELEASE)}, in {bug.function}\n"
        f"    {bug.code}\nRuntimeError: Expected all tensors to be on the same device, but found at least "
        f"two devices, cuda:0 and cpu!\n{VERSIONS}"
    )
    assert main(["explain", str(path), "--run"]) == 0
    out = capsys.readouterr().out
    assert f"candidate {bug.id}" in out
    # the diagnosis of the reproduction, in 4.51.3 (here, or in the version lab)
    assert "FAILED: Qwen/Qwen2.5-VL-7B-Instruct forward" in out and f"known bug: {bug.id}" in out


def test_the_shipped_line_index_covers_the_catalogue_and_agrees_with_the_installed_source():
    from qwenvl_diag.bugs import find_in_source
    from qwenvl_diag.explain.lines import INDEX, line_in, line_index

    assert json.loads(INDEX.read_text())["entries"] == sorted(bug.id for bug in CATALOGUE)
    installed = str(TRANSFORMERS_VERSION)
    assert installed in line_index(), f"rebuild the index: scripts/build_line_index.py ({installed} missing)"
    for bug in CATALOGUE:
        found = find_in_source(bug)
        assert line_in(bug.id, installed) == (found[1] if found else None), bug.id
    assert line_in("qwen2_5_vl-batched-causal-mask", RELEASE) == 1334  # BUG_FACTS.md
    assert line_in("qwen2_5_vl-video-second-per-grid-ts", RELEASE) == 1645


@pytest.mark.parametrize("bug", REPRODUCED, ids=[bug.id for bug in REPRODUCED])
def test_a_line_number_alone_names_the_bug_and_the_releases_it_fits(reproductions, bug):
    from qwenvl_diag.explain.lines import line_in, releases_with_line

    error = reproductions[bug.id]["error"]
    name = bug.file.rsplit("/", 1)[-1]
    with_release = qd.explain(f"{error}\nat {name}:{line_in(bug.id, RELEASE)}, transformers {RELEASE}")
    assert with_release.best["id"] == bug.id, with_release.candidates
    line_4_50 = line_in(bug.id, "4.50.3")
    without = qd.explain(f"{error} ({name} line {line_4_50})")
    assert without.best["id"] == bug.id and "4.50.0 to 4.50.3" in without.best["evidence"][0], without.best
    assert releases_with_line(bug.id, line_4_50) == ["4.50.0", "4.50.1", "4.50.2", "4.50.3"]
    # another line of that file: only the error's devices and the family still point to it, weakly
    elsewhere = qd.explain(f"{error}\nat {name}:{line_4_50 + 7}, transformers {RELEASE}")
    [candidate] = [c for c in elsewhere.candidates if c["id"] == bug.id]
    assert candidate["score"] < with_release.best["score"]
    assert not any("is its line" in evidence for evidence in candidate["evidence"]), candidate["evidence"]


def _last_affected_with_line(bug) -> tuple[str, int]:
    """The newest indexed release the entry affects, and its code's line there."""
    from packaging.version import Version

    from qwenvl_diag.explain.lines import line_index

    found = [(r, lines[bug.id]) for r, lines in line_index().items() if bug.id in lines and bug.affects(r)]
    return max(found, key=lambda pair: Version(pair[0]))


def _error_of(bug) -> str:
    """An error line of the entry's device pair: PyTorch's "Expected all tensors ..." for two GPUs or a GPU
    and the CPU; for an offloaded weight's meta placeholder, the convolution's type check (the only text
    torch has for it)."""
    devices = {"gpu/gpu": "cuda:1 and cuda:0", "gpu/cpu": "cuda:0 and cpu"}.get(bug.signature.devices)
    if devices is None:
        return (
            "RuntimeError: Input type (CUDABFloat16Type) and weight type (MetaBFloat16Type) should be the "
            "same"
        )
    return (
        "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, "
        f"{devices}!"
    )


@pytest.mark.parametrize("bug", RAISING, ids=[bug.id for bug in RAISING])
def test_every_entry_is_explained_from_its_own_line(bug):
    """Every catalogue entry that raises, also one that 4.51.3 does not reproduce, from a traceback
    built of its own file, function, code and its line in its newest affected release (the shipped
    index), with an error of its signature's device pair."""
    release, line = _last_affected_with_line(bug)
    path = f"/srv/py/site-packages/transformers/{bug.file}"
    frame = {"file": path, "line": line, "function": bug.function}
    failure = {"frames": [{**frame, "code": bug.code}], "error": _error_of(bug)}
    for form in ("plain", "old-ipython", "torchrun", "windows", "colour"):  # ipython's drops frame 0
        result = qd.explain(FORMATS[form](failure) + f"\ntransformers=={release}")
        assert result.best["id"] == bug.id, (form, release, result.candidates)
        assert result.best["against"] == [], result.best
    without_code = _plain({"frames": [{**frame, "code": "..."}], "error": failure["error"]})
    assert qd.explain(f"{without_code}\ntransformers=={release}").best["id"] == bug.id  # the line alone


def _newer_than_the_index(steps: int = 1) -> str:
    """A release `steps` minors after the newest the kit has indexed (not a real one: a stand-in for next
    week's), so that this test holds whichever release is the newest on the package index."""
    from packaging.version import Version

    from qwenvl_diag.explain.lines import newest_indexed

    newest = Version(newest_indexed())
    return f"{newest.major}.{newest.minor + steps}.0"


@pytest.mark.parametrize("bug", RAISING, ids=[bug.id for bug in RAISING])
def test_a_release_newer_than_the_index_is_said_and_matched_by_code_and_function(bug):
    """A traceback from a release the kit has not indexed: the reply and the notes say so, and the entry
    is still named from its file, function and code; without the code, its line is not taken as its line
    (the kit cannot know where the code sits there), but the function in its file still names an open
    bug (a fixed one is then no candidate: the function alone, in a release it does not affect)."""
    from qwenvl_diag.explain.lines import index_note, is_indexed, newest_indexed

    release, line = _last_affected_with_line(bug)
    newer = _newer_than_the_index()
    assert not is_indexed(newer) and is_indexed(release) and index_note(release) is None
    note = f"transformers {newer} is newer than the kit's index ({newest_indexed()}): matched by code"
    frame = {"file": f"/srv/py/site-packages/transformers/{bug.file}", "line": line, "function": bug.function}
    error = _error_of(bug)
    with_code = qd.explain(
        _plain({"frames": [{**frame, "code": bug.code}], "error": error}) + f"\ntransformers=={newer}"
    )
    assert [n[: len(note)] for n in with_code.notes] == [note] and f"**Note**: {note}" in with_code.reply
    assert json.loads(with_code.to_json())["notes"] == list(with_code.notes)
    assert f"note: {note}" in with_code.to_text()
    if bug.affects(newer):  # an open bug: its code quoted at its frame is the strongest evidence
        assert with_code.best["id"] == bug.id and with_code.best["against"] == [], with_code.candidates
    else:  # fixed before: named, and said not to affect that release
        [candidate] = [c for c in with_code.candidates if c["id"] == bug.id]
        assert any("is not affected" in reason for reason in candidate["against"]), candidate
    without_code = qd.explain(
        _plain({"frames": [{**frame, "code": "..."}], "error": error}) + f"\ntransformers=={newer}"
    )
    named = [c for c in without_code.candidates if c["id"] == bug.id]
    if bug.affects(newer):
        assert named[0]["evidence"][0] == f"the traceback ends in {bug.function} in {bug.file}", named
    else:  # the function alone, in a release its range leaves out, is not enough
        assert named == [], named
    assert without_code.notes == with_code.notes


def test_an_unrecognised_paste_from_an_unindexed_release_says_the_index_is_older():
    newer = _newer_than_the_index(2)
    result = qd.explain(f"{UNRELATED['nothing']}\ntransformers=={newer}")
    assert (
        not result.recognised and f"Note: transformers {newer} is newer than the kit's index" in result.reply
    )
    assert qd.explain(f"{UNRELATED['nothing']}\ntransformers=={RELEASE}").notes == ()


NEW_FAMILY_FILES = {
    "qwen3_5": "qwen3_5/modeling_qwen3_5.py",
    "qwen3_5_moe": "qwen3_5_moe/modeling_qwen3_5_moe.py",
    "qwen4_exp": "qwen4_exp/modeling_qwen4_exp.py",
    "qwen2_5_omni": "qwen2_5_omni/modeling_qwen2_5_omni.py",
    "qwen3_omni_moe": "qwen3_omni_moe/modeling_qwen3_omni_moe.py",
}


@pytest.mark.parametrize("family", sorted(NEW_FAMILY_FILES))
def test_the_new_families_files_are_qwen_vision_language_code_not_another_model(family):
    text = (
        'Traceback (most recent call last):\n  File "/x/site-packages/transformers/models/'
        f'{NEW_FAMILY_FILES[family]}", line 1260, in forward\n'
        "    pos_embeds = (self.pos_embed(interp_indices) * interp_weights[:, :, None]).sum(1)\n"
        "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, "
        "cuda:0 and cpu!\ntransformers==5.25.0\n"
    )
    facts = read_facts(text)
    assert (facts["model_type"], facts["family"]) == (family, family)
    assert "not a Qwen-VL model" not in qd.explain(text).reply


@pytest.mark.parametrize(
    ("text", "family", "checkpoint"),
    [
        ("Qwen/Qwen3.5-35B-A3B on 4 GPUs", "qwen3_5_moe", "Qwen/Qwen3.5-35B-A3B"),
        ("loading Qwen/Qwen3.5-27B with device_map=auto", "qwen3_5", "Qwen/Qwen3.5-27B"),
        (
            "Qwen3-Omni-30B-A3B-Instruct, use_audio_in_video=True",
            "qwen3_omni_moe",
            "Qwen3-Omni-30B-A3B-Instruct",
        ),
        ("Qwen2.5-Omni-7B thinker", "qwen2_5_omni", "Qwen2.5-Omni-7B"),
        ("Qwen3.8-Flash-Next-FP8", "qwen4_exp", "Qwen3.8-Flash-Next-FP8"),
    ],
)
def test_the_new_families_are_read_from_checkpoint_names(text, family, checkpoint):
    facts = read_facts(text)
    assert (facts["family"], facts["checkpoint"]) == (family, checkpoint)


def test_equal_evidence_is_said_as_a_tie_and_gets_no_high_confidence():
    # the host inv_freq line is the same in its first range and its second
    text = (
        "freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(2, 3)\n"
        "RuntimeError: Expected all tensors to be on the same device, but got mat2 is on cpu, different from "
        "other tensors on cuda:0 (when checking argument in method wrapper_CUDA_bmm)\nQwen3-VL-8B, FSDP2"
    )
    result = qd.explain(text)
    tied = [c["id"] for c in result.candidates if c["tied"]]
    assert tied[:2] == ["qwen3_vl-fsdp2-host-inv-freq", "qwen3_vl-fsdp2-host-inv-freq-again"], tied
    assert result.answer["confidence"] == "medium" and "**A tie**" in result.reply


def test_an_inference_report_ranks_the_usage_entry_above_an_fsdp2_training_bug():
    error = (
        "RuntimeError: Expected all tensors to be on the same device, but got index is on cpu, different "
        "from other tensors on cuda:0 (when checking argument in method wrapper_CUDA__index_select)"
    )
    inference = qd.explain(f"Qwen3-VL-8B-Instruct\nmodel.generate(**inputs)\n{error}")
    training = qd.explain(f"Qwen3-VL-8B-Instruct, verl with FSDP2 CPU offload, trainer.fit()\n{error}")
    assert inference.best["id"] == "qwen3_vl-inputs-on-cpu"
    fsdp = next(c for c in inference.candidates if c["id"] == "qwen3_vl-fsdp2-offload-pos-embed-index")
    assert any("needs FSDP2 training" in reason for reason in fsdp["against"])
    assert training.best["id"] == "qwen3_vl-fsdp2-offload-pos-embed-index"


def test_a_stated_range_counts_for_the_entries_it_holds():
    error = (
        "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, cuda:1 "
        "and cuda:0! (when checking argument for argument mask in method wrapper_CUDA__masked_scatter_)"
    )
    holds, misses = (
        qd.explain(f"Qwen2-VL-7B\ntransformers>=4.45.0\n{error}"),
        qd.explain(f"Qwen2-VL-7B\ntransformers>=4.50\n{error}"),
    )
    assert holds.best["id"] == "qwen2_vl-image-mask-device"
    assert any("includes affected releases" in e for e in holds.best["evidence"])
    assert all(c["id"] != "qwen2_vl-image-mask-device" or c["against"] for c in misses.candidates)


def test_a_release_written_with_two_parts_is_its_first_patch_release():
    from qwenvl_diag.explain.lines import line_in

    bug = next(bug for bug in RAISING if bug.id == "qwen2_5_vl-video-second-per-grid-ts")
    line = line_in(bug.id, "4.50.0")
    text = (
        f'File "/x/site-packages/transformers/{bug.file}", line {line}, in {bug.function}\n'
        "    ...\nRuntimeError: Expected all tensors to be on the same device, but found at least two "
        "devices, cuda:0 and cpu!\nI use transformers 4.50"
    )
    result = qd.explain(text)
    assert result.best["id"] == bug.id and result.best["tier"] == "line"
    assert result.best["evidence"][0] == f"line {line} of {bug.file} in 4.50 is its line ({bug.code})"


def test_names_written_against_chinese_prose_read_as_words():
    facts = read_facts(
        "Qwen2.5-VL模型报错: rope_deltas张量与cache_position张量没有位于相同的计算设备上。"
        "使用zero3训练, Swift框架"
    )
    assert (facts["family"], facts["error_kind"], facts["action"]) == ("qwen2_5_vl", "device", "training")
    assert {tool["tool"]: tool["where"] for tool in facts["tools"]} == {
        "deepspeed": "named",
        "ms-swift": "named",
    }
    result = qd.explain(
        "Qwen2.5-VL模型中的设备一致性问题: rope_deltas张量与cache_position张量没有位于相同的计算设备上"
    )
    assert result.best["id"] == "qwen2_5_vl-text-generate-rope-deltas"
    assert "the text mentions rope_deltas, of its line" in result.best["evidence"]


def test_an_op_named_in_words_is_the_op_of_a_device_error_read_without_one():
    said = read_facts(
        '报错"Expected all tensors to be on the same device, but found at least two devices, cuda:1 and '
        'cuda:0"。'
        "该错误发生在执行masked_scatter操作时"
    )
    assert (said["op"], said["wrapper"], said["device_pair"]) == ("masked_scatter", None, "gpu/gpu")
    # words that are English ("add", "cat", "where") are no op; a wrapper or torch's wording outranks words
    assert read_facts("tensors are not on the same device when I add a cat image")["op"] is None
    wrapped = read_facts(
        "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, "
        "cuda:1 and cuda:0! (when checking argument for argument index in method wrapper_CUDA__index_select)"
        " while masked_scatter ..."
    )
    assert wrapped["op"] == "index_select"


def test_an_error_wrapped_onto_the_next_lines_is_read_whole():
    facts = read_facts(
        "    mrope_position_deltas_cache.index_copy_(0, seq_slots, deltas)\n"
        "    RuntimeError: Expected all tensors to be on the same device, but got\n"
        "    source is on cpu, different from other tensors on cuda:0\n"
        "      (when checking argument in method wrapper_CUDA_index_copy_)\n"
        "Qwen3-VL"
    )
    assert (facts["devices"], facts["op"], facts["argument"]) == (["cpu", "cuda:0"], "index_copy_", "source")
    two_spaces = read_facts(
        "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, cuda:0 "
        "and cuda:1!  (when checking argument for argument mat2 in method wrapper_CUDA_bmm)"
    )
    assert (two_spaces["op"], two_spaces["argument"]) == ("bmm", "mat2")


def test_a_quoted_span_of_lines_points_to_the_entries_whose_line_it_holds():
    from qwenvl_diag.explain.lines import line_in

    line = line_in("qwen2_vl-image-mask-device", "4.45.0")
    for quoted in (
        f"transformers/models/qwen2_vl/modeling_qwen2_vl.py的{line - 7}-{line + 1}行",
        f"https://github.com/huggingface/transformers/blob/v4.45.0/src/transformers/models/qwen2_vl/"
        f"modeling_qwen2_vl.py#L{line - 7}-L{line + 1}",
        f"lines {line - 7} to {line + 1} of modeling_qwen2_vl.py",
    ):
        facts = read_facts(f"Qwen2-VL on two GPUs: {quoted}\ntensors are not on the same device")
        assert [(f["line"], f["end"]) for f in facts["frames"]] == [(line - 7, line + 1)], quoted
        result = qd.explain(
            f"transformers 4.45.0, Qwen2-VL on two GPUs: {quoted}\ncuda:1 and cuda:0 device mismatch"
        )
        assert result.best["id"] == "qwen2_vl-image-mask-device" and result.best["tier"] == "function"
        assert result.best["evidence"][0].startswith(f"lines {line - 7}-{line + 1} of "), result.best[
            "evidence"
        ]
    # a single line from a GitHub link is a line of the file
    linked = read_facts(f"see modeling_qwen2_vl.py#L{line}")["frames"]
    assert [(f["line"], f["end"]) for f in linked] == [(line, None)]


def test_a_release_older_than_the_familys_first_is_a_preview_build_said_so():
    result = qd.explain(
        "transformers version: 4.50.0.dev0\nQwen2.5-Omni-7B on 2 GPUs\nRuntimeError: Expected all tensors to "
        "be on the same device, but found at least two devices, cuda:1 and cuda:0!"
    )
    assert result.candidates == []  # no release has the code the text ran
    assert (result.answer["label"], result.answer["confidence"]) == ("transformers:uncatalogued", "medium")
    assert "predates qwen2_5_omni's first release (4.52.1)" in result.answer["summary"]
    assert "transformers>=4.52.1" in result.reply


@pytest.mark.parametrize(
    "install",
    [
        "pip install git+https://github.com/huggingface/transformers@f742a644ca32e65758c3adb36225aef1731bd2a8",
        "pip install git+https://github.com/huggingface/transformers@f742a64",
        'pip install "git+https://github.com/huggingface/transformers@v4.51.3-Qwen2.5-Omni-preview"',
    ],
)
def test_a_preview_build_named_by_its_git_ref_is_said_so(install):
    # QwenLM/Qwen2.5-Omni#124: the README's commit, no release stated
    error = (
        "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, "
        "cuda:1 and cuda:0!"
    )
    result = qd.explain(f"{install}\n{error}")
    assert result.facts["transformers_ref"] == install.rsplit("@", 1)[1].rstrip('"')
    assert (result.answer["label"], result.answer["confidence"]) == ("transformers:uncatalogued", "medium")
    assert "the preview of qwen2_5_omni's code" in result.answer["summary"]
    assert result.facts["versions"].get("transformers") == ("4.51.3" if "@v4" in install else None)
    assert "transformers>=4.52.1" in result.answer["summary"]
    # another ref is a source build like any other: nothing said about a preview
    other = qd.explain(f"{install.replace('f742a64', 'abcdef1').replace('Omni-preview', 'x')}\n{error}")
    assert other.answer is None or "preview" not in other.answer["summary"]


@pytest.mark.parametrize(
    "code, name",
    [
        # QwenLM/Qwen2.5-Omni#175: web_demo's generate with the preview's voice keyword
        ("text_ids, audio = model.generate(**inputs, spk=voice, use_audio_in_video=True)", "spk"),
        # the preview README's loading line
        (
            'model = Qwen2_5OmniModel.from_pretrained("Qwen/Qwen2.5-Omni-7B", device_map="auto")',
            "Qwen2_5OmniModel",
        ),
    ],
)
def test_code_that_uses_a_previews_own_api_ran_the_preview(code, name):
    frame = (
        '  File "/root/miniconda3/lib/python3.10/site-packages/transformers/models/qwen2_5_omni/'
        'modeling_qwen2_5_omni.py", line 4796, in generate\n    thinker_result = self.thinker.generate(\n'
    )
    error = (
        "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, "
        "cuda:1 and cuda:0!"
    )
    caller = f'  File "web_demo.py", line 115, in predict\n    {code}\n'
    text = f"Traceback (most recent call last):\n{caller}{frame}{error}"
    result = qd.explain(text)
    assert result.facts["preview_api"] == [name]
    assert (result.answer["label"], result.answer["confidence"]) == ("transformers:uncatalogued", "medium")
    assert f"uses `{name}`, of the preview of qwen2_5_omni's code" in result.answer["summary"]
    assert "transformers>=4.52.1" in result.answer["summary"]
    # the released API (`speaker`, the class's release name) says nothing of a preview
    released = text.replace("spk=", "speaker=").replace(
        "Qwen2_5OmniModel", "Qwen2_5OmniForConditionalGeneration"
    )
    assert qd.explain(released).facts["preview_api"] == []
    # nor does 4.52.1's own warning that still names the preview's class
    warning = (
        "Qwen2_5OmniModel is using Qwen2_5OmniSdpaAttention, but "
        "`torch.nn.functional.scaled_dot_product_attention`"
    )
    assert read_facts(f"{warning}\n{released}")["preview_api"] == []
    # a keyword of that name in another family's text is that family's business
    assert read_facts(text.replace("qwen2_5_omni", "qwen2_5_vl"))["preview_api"] == []


def test_a_link_to_an_entrys_own_report_names_it():
    # huggingface/transformers#33851: "Fixes https://github.com/huggingface/transformers/issues/33816, ..."
    bug = next(bug for bug in CATALOGUE if bug.id == "qwen2_vl-image-mask-device")
    issue = next(ref for ref in bug.references if "/issues/" in ref)
    number = issue.rsplit("/", 1)[1]
    words = "and propagates changes to all other VLMs with masked scatter"
    for link in (issue, f"huggingface/transformers#{number}"):
        result = qd.explain(f"Fixes {link}, {words}")
        assert result.best["id"] == bug.id and result.best["tier"] == "reference"
        assert result.answer["confidence"] == "medium"
        assert f"the text links its report, huggingface/transformers#{number}" in result.best["evidence"]
        assert "the text links its own issue or pull request" in result.reply
    # a bare number names no repository; another issue is no entry's
    assert qd.explain(f"Fixes #{number}, {words}").candidates == []
    assert qd.explain(f"Fixes {issue[: -len(number)]}{int(number) + 1}, {words}").candidates == []
    # another entry's line outweighs a link
    other = next(b for b in CATALOGUE if b.id == "qwen2_vl-batched-causal-mask")
    frame = f'  File "/x/site-packages/transformers/{other.file}", line 9, in {other.function}\n'
    frame += f"    {other.code}\n"
    assert qd.explain(f"same as {issue}\n{frame}").best["id"] == other.id


def test_a_report_without_its_error_line_is_read_from_its_placement_and_cues():
    # EvolvingLMMs-Lab/lmms-eval#603: the error only in a screenshot; Qwen2.5-VL, video, a device_map
    text = (
        "Hi, have you met a bug with Qwen2.5vl on video benchmark like below? I try device_map to cuda:0, "
        "cuda, auto. It doesnot work\n\n![Image](https://github.com/user-attachments/assets/x)"
    )
    result = qd.explain(text)
    assert result.answer["label"] == "qwen2_5_vl-video-second-per-grid-ts"
    assert result.answer["confidence"] == "low" and result.candidates[0]["tier"] == "context"
    # the same words without a placement say nothing of devices: no candidate
    assert qd.explain(text.replace("I try device_map to cuda:0, cuda, auto. ", "")).candidates == []


def test_a_model_release_tag_is_read_as_its_release():
    # Hugging Face's model-release tags branch a release and add one model (Gemma 3 here)
    text = (
        "pip install git+https://github.com/huggingface/transformers@v4.49.0-Gemma-3\nQwen2.5-VL-7B-Instruct"
    )
    facts = read_facts(text)
    assert facts["transformers_ref"] == "v4.49.0-Gemma-3" and facts["versions"]["transformers"] == "4.49.0"
    # a version the text states is kept
    stated = read_facts(f"transformers version: 4.50.3\n{text}")
    assert stated["versions"]["transformers"] == "4.50.3"


def test_a_line_of_a_release_outweighs_a_preview_ref_named_beside_it():
    bug = next(bug for bug in CATALOGUE if bug.id == "qwen2_vl-image-mask-device")
    text = (
        "pip install git+https://github.com/huggingface/transformers@21fac7abba2a37fae86106f87fcf9974fd1e3830\n"
        f'  File "/x/site-packages/transformers/{bug.file}", line 1, in {bug.function}\n    {bug.code}\n'
        "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, "
        "cuda:1 and cuda:0! (when checking argument for argument mask in method "
        "wrapper_CUDA__masked_scatter_)"
    )
    assert qd.explain(text).answer["label"] == bug.id


def test_a_trainer_named_beside_zero3_is_whose_settings_to_report_first():
    text = (
        "Qwen-Omni尝试使用zero3训练时出现RuntimeError: Expected all tensors to be on the same device, but "
        "found at least two devices, cuda:0 and cpu! (ms-swift)"
    )
    assert qd.explain(text).answer["label"] == "tool:ms-swift"
    # ms-swift also by its command line's DeepSpeed shorthand, as #3824 itself names it
    script = "训练脚本为examples/train/grpo/qwen2_5_omni/grpo.sh，仅将--deepspeed zero2修改为zero3"
    shorthand = text.replace(" (ms-swift)", f"\n{script}")
    assert [t["tool"] for t in read_facts(shorthand)["tools"]] == ["deepspeed", "ms-swift"]
    assert qd.explain(shorthand).answer["label"] == "tool:ms-swift"
    assert [t["tool"] for t in read_facts("deepspeed --deepspeed ds_z3_config.json")["tools"]] == [
        "deepspeed"
    ]
    alone = text.replace(" (ms-swift)", "")
    assert qd.explain(alone).answer["label"] == "tool:deepspeed"


def test_trust_remote_code_for_a_family_transformers_ships_is_not_remote_code():
    text = (
        "model = Qwen2VLForConditionalGeneration.from_pretrained(path, trust_remote_code=True, "
        'device_map="auto")\n'
        "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, cuda:0 "
        "and cuda:1! (when checking argument for argument mask in method wrapper_CUDA__masked_scatter_)"
    )
    result = qd.explain(text)
    assert result.answer["label"] == "qwen2_vl-image-mask-device"
    frame = (
        'File "/x/.cache/huggingface/modules/transformers_modules/Qwen-VL-Chat/visual.py", line 9, '
        "in forward\n"
    )
    assert qd.explain(frame + text).answer["label"] == "tool:remote-code"


def test_a_function_only_named_in_words_gives_way_to_the_serving_engine_named():
    text = (
        "In `python/sglang/srt/layers/rotary_embedding/mrope_rope_index.py`, the multimodal `get_rope_index` "
        "builds the position ids\nRuntimeError: Expected all tensors to be on the same device, but found at "
        "least two devices, cuda:0 and cpu!"
    )
    result = qd.explain(text)
    assert result.answer["label"] == "tool:sglang"
    assert (
        result.best["tier"] == "name"
    )  # the catalogue's get_rope_index, named: the weakest evidence of where


def test_a_paste_copied_from_a_rendered_page_reads_as_printed():
    markdown = read_facts(
        r"RuntimeError: Expected all tensors to be on the same device, but found at least two devices, "
        r"cuda:0 and cpu! (when checking argument for argument index in method "
        r"wrapper\_CUDA\_\_index\_select)"
    )
    assert (markdown["op"], markdown["argument"]) == ("index_select", "index")
    entities = read_facts(
        "File &quot;/x/site-packages/transformers/models/qwen2_vl/modeling_qwen2_vl.py&quot;, line 1694, "
        "in forward\n    inputs_embeds = inputs_embeds.masked_scatter(image_mask, image_embeds)"
    )
    assert entities["library_frame"]["line"] == 1694 and entities["family"] == "qwen2_vl"
    # the "!" lost in a copy: the wrapper is still read
    bare = read_facts(
        "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cuda:1 "
        "(when checking argument for argument mat2 in method wrapper_CUDA_bmm)"
    )
    assert (bare["op"], bare["devices"]) == ("bmm", ["cuda:0", "cuda:1"])


def test_more_tools_built_on_transformers_are_read_from_frames_and_words():
    error = (
        "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, cuda:1 "
        "and cuda:0! (when checking argument for argument index in method wrapper_CUDA__index_select)"
    )
    frames = (
        'File "/x/site-packages/colpali_engine/models/qwen2/colqwen2/modeling_colqwen2.py", line 54, '
        "in forward\n"
        'File "/x/site-packages/transformers/models/qwen2_vl/modeling_qwen2_vl.py", line 1500, in forward\n'
    )
    result = qd.explain(frames + error)
    assert result.answer["label"] == "tool:colpali-engine" and result.answer["confidence"] == "medium"
    assert "its first parameter's" in result.reply  # the mechanism of a model library, in the kit's words
    named = {
        "fine-tuning Qwen2.5-VL with axolotl on 2 GPUs": "axolotl",
        "Qwen2-VL served by text-generation-inference": "text-generation-inference",
        "DiffSynth-Studio low VRAM mode with the Qwen2.5-VL text encoder": "diffsynth-studio",
        "SentenceTransformer('Alibaba-NLP/gme-Qwen2-VL-2B-Instruct')": "sentence-transformers",
        # diffusers by its API: Qwen-Image's pipeline runs Qwen2.5-VL as its text encoder
        'pipe = QwenImageEditPipeline.from_pretrained("Qwen/Qwen-Image-Edit")': "diffusers",
        "pipe.enable_model_cpu_offload()": "diffusers",
        # ComfyUI by its model management's words (Comfy-Org/ComfyUI#13295) and its log
        "partially loaded with dynamic vram off; A_log stays on cpu: added cast_to_device": "comfyui",
        "loaded partially 5120.0 4980.3 0\nRuntimeError: Expected all tensors": "comfyui",
        # TensorRT-LLM's PyTorch backend by its own names (NVIDIA/TensorRT-LLM#16529, #16537)
        "py_executor_creator.create_py_executor -> kv_cache_creator.configure_kv_cache": "tensorrt-llm",
        "mrope_position_deltas_cache.index_copy_(0, seq_slots, deltas)": "tensorrt-llm",
    }
    for words, tool in named.items():
        assert [t["tool"] for t in read_facts(words)["tools"]] == [tool], words


def test_a_packages_own_copy_of_a_qwen_model_file_is_whose_code_raised():
    # ByteDance-Seed/VeOmni#776: its generated copy of the Qwen3.5-MoE file, quoted with its line
    error = (
        "RuntimeError: Expected all tensors to be on the same device, but got mat2 is on cpu, different from "
        "other tensors on cuda:0 (when checking argument in method wrapper_CUDA_bmm)"
    )
    copy = "veomni/models/transformers/qwen3_5_moe/generated/patched_modeling_qwen3_5_moe_gpu.py:247"
    result = qd.explain(f"Qwen3.5-MoE with FSDP2 CPU offload\n{copy}\n{error}")
    assert result.answer["label"] == "tool:veomni" and result.answer["whose"] == "veomni"
    [row] = result.facts["tools"]
    assert (row["role"], row["where"]) == ("model copy", "raised")
    assert "patched_modeling_qwen3_5_moe_gpu.py" in row["report"]
    assert "its own copy of transformers' Qwen model code" in result.reply

    def tools(path: str) -> list[tuple[str, str]]:
        frames = [{"file": path, "line": 1, "function": "forward", "code": "x"}]
        return [(t["tool"], t["where"]) for t in tools_in(frames, "")]

    assert tools("/opt/venv/lib/python3.10/site-packages/lvu/models/modeling_qwen2_5_vl.py") == [
        ("lvu", "raised")
    ]
    # a vendored copy of transformers inside another package is that package's
    assert tools("/x/site-packages/lvu/transformers/models/qwen2_vl/modeling_qwen2_vl.py") == [
        ("lvu", "raised")
    ]
    # transformers' own file (an egg of it too), remote code, a known tool's copy: not a package's copy
    assert tools("/x/site-packages/transformers/models/qwen2_vl/modeling_qwen2_vl.py") == []
    assert (
        tools("/x/site-packages/transformers-4.45.2-py3.10.egg/transformers/models/modeling_qwen2_vl.py")
        == []
    )
    assert tools("/x/site-packages/swift/llm/model/modeling_qwen2_vl.py") == [("ms-swift", "raised")]
    assert tools("/root/.cache/huggingface/modules/transformers_modules/Qwen/x/modeling_qwen.py") == [
        ("remote-code", "raised")
    ]
    # a folder every project has, or a user's own absolute path, names no package
    assert tools("models/modeling_qwen2_vl.py") == tools("/home/u/project/modeling_qwen2_vl.py") == []
    # a copy with transformers' layout and a catalogued line: the package's code, not the release's
    bug = next(bug for bug in CATALOGUE if bug.id == "qwen2_vl-image-mask-device")
    traceback = f'  File "/x/site-packages/{{}}/{bug.file}", line 9, in forward\n    {bug.code}\n{error}'
    assert qd.explain(traceback.format("lvu")).answer["label"] == "tool:lvu"
    egg = qd.explain(traceback.format("transformers-4.45.2-py3.10.egg/transformers"))
    assert egg.answer["label"] == bug.id and egg.candidates[0]["tier"] == "line"


def test_vllm_ascend_is_named_by_its_own_model_classes():
    # vllm-project/vllm-ascend#2007: vLLM's Qwen2.5-VL replaced by the plugin's Ascend classes on an NPU
    text = (
        "In `AscendQwen2_5_VisionAttention_Without_Padding`, `torch_npu.npu_rotary_mul(q, cos, sin)`, `cos`/"
        "`sin` on cpu, but `q` on npu, so there will be an error. rot_pos_emb is from vllm"
    )
    assert [t["tool"] for t in read_facts(text)["tools"]] == ["vllm-ascend", "vllm"]
    assert qd.explain(text).answer["label"] == "tool:vllm-ascend"


def test_the_inputs_left_on_the_cpu_of_a_qwen3_vl_moe_checkpoint_are_the_usage_entry():
    """Qwen3-VL's MoE checkpoints (30B-A3B) run a generated copy of its file: the same line there."""
    text = (
        'File "/x/site-packages/transformers/models/qwen3_vl_moe/modeling_qwen3_vl_moe.py", line 1282, in '
        "forward\n    inputs_embeds = self.get_input_embeddings()(input_ids)\nRuntimeError: Expected all "
        "tensors to be on the same device, but got index is on cpu, different from other tensors on cuda:0 "
        "(when checking argument in method wrapper_CUDA__index_select)"
    )
    result = qd.explain(text)
    assert (result.answer["label"], result.answer["confidence"]) == ("qwen3_vl-inputs-on-cpu", "high")


def test_a_traceback_kept_in_a_json_log_line_or_run_into_one_line_reads_as_printed():
    bug = next(bug for bug in CATALOGUE if bug.id == "qwen2_5_vl-video-second-per-grid-ts")
    printed = (
        "Traceback (most recent call last):\n"
        '  File "C:\\envs\\vl\\Lib\\site-packages\\transformers\\generation\\utils.py", line 2024, in '
        "generate\n"
        "    result = self._sample(\n"
        f'  File "C:\\envs\\vl\\Lib\\site-packages\\transformers\\{bug.file}", line 9, in {bug.function}\n'
        f"    {bug.code}\n"
        "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, "
        "cuda:0 and cpu!"
    )
    logged = json.dumps({"level": "ERROR", "message": printed})  # one line: "\n", "\"" and "\\" escaped
    assert "\n" not in logged
    one_line = " ".join(printed.split("\n"))  # a chat message, a form's one-line field
    for text in (printed, logged, repr(printed), one_line):
        result = qd.explain(text)
        assert (result.best["id"], result.best["tier"]) == (bug.id, "line"), text
        assert result.facts["frames"][-1]["file"].endswith(bug.file.rsplit("/", 1)[1])
    # a text with no traceback in a string keeps its backslashes: a code line's "\n" is code
    code = 'print("a\\nb")\nRuntimeError: Expected all tensors to be on the same device'
    assert as_printed(code) == code


def test_a_paste_hard_wrapped_at_a_fixed_width_reads_as_printed():
    bug = next(bug for bug in CATALOGUE if bug.id == "qwen2_vl-image-mask-device")
    printed = (
        "Traceback (most recent call last):\n"
        '  File "/home/someone/miniconda3/envs/qwen2vl/lib/python3.10/site-packages/transformers/'
        f'generation/utils.py", line 2024, in generate\n    result = self._sample(\n'
        f'  File "/home/someone/miniconda3/envs/qwen2vl/lib/python3.10/site-packages/transformers/{bug.file}"'
        f", line 1694, in {bug.function}\n    {bug.code}\n"
        "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, cuda:1 "
        "and cuda:0! (when checking argument for argument mask in method wrapper_CUDA__masked_scatter_)\n"
        "transformers version: 4.45.2"
    )
    for width in (72, 80, 100):
        folded = "\n".join(
            line[start : start + width]
            for line in printed.split("\n")
            for start in range(0, len(line), width)
        )
        assert folded != printed
        result = qd.explain(folded)
        assert (result.best["id"], result.answer["confidence"]) == (bug.id, "high"), width
        assert result.facts["op"] == "masked_scatter_" and result.facts["devices"] == ["cuda:1", "cuda:0"]
    # a table's rows share a width by design: never joined
    smi = ["+" + "-" * 89 + "+", "| NVIDIA-SMI 535.104.05" + " " * 67 + "|", "+" + "-" * 89 + "+"] * 2
    assert unfolded(smi) == smi
    # nor are lines of different lengths, or fewer than three of the longest one
    prose = ["x" * 70, "y" * 65, "z" * 70, "short"]
    assert unfolded(prose) == prose
    # nor lines that share a width by themselves and end at a word's end (tqdm's bars)
    bar = "Loading checkpoint shards: 100%|##########| {0}/4 [00:0{0}<00:00,  1.05it/s]"
    bars = [bar.format(shard) for shard in range(1, 5)] + ["Traceback (most recent call last):"]
    assert len({len(line) for line in bars[:4]}) == 1 and unfolded(bars) == bars


def test_the_pins_table_holds_each_tools_transformers_requirements():
    table = pins()
    assert sorted(table) == sorted(PINNING)
    for tool, releases in table.items():
        assert releases, tool
        assert list(releases) == sorted(releases, key=Version), tool
        for release, spec in releases.items():
            SpecifierSet(spec)  # each parses
            assert Version(release) and not Version(release).is_prerelease


def test_a_wheels_transformers_requirement_is_read_outside_its_extras():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    try:
        from build_pins import transformers_requirement
    finally:
        sys.path.pop(0)
    metadata = (
        "Metadata-Version: 2.1\nName: llamafactory\nRequires-Dist: transformers; extra == 'dev'\n"
        "Requires-Dist: transformers!=4.46.*,<=4.49.0,>=4.41.2; python_version >= '3.9'\n"
        "Requires-Dist: accelerate<=1.2.1,>=0.34.0\n"
    )
    assert transformers_requirement(metadata) == "!=4.46.*,<=4.49.0,>=4.41.2"
    assert transformers_requirement("Requires-Dist: Transformers\n") == ""
    assert (
        transformers_requirement(
            "Requires-Dist: accelerate\nRequires-Dist: transformers[torch]; extra == 'x'"
        )
        is None
    )


def test_a_tool_release_with_no_transformers_version_implies_its_range():
    releases = pins()["llamafactory"]
    # a release whose requirement allows Qwen2-VL's first release and not the one that moved its line
    release, spec = next(
        (r, s)
        for r, s in releases.items()
        if SpecifierSet(s).contains("4.45.2") and not SpecifierSet(s).contains("4.47.0")
    )
    error = (
        "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, cuda:1 "
        "and cuda:0!"
    )
    text = f"- `llamafactory` version: {release}\nQwen2-VL-7B-Instruct on 2 GPUs, device_map auto\n{error}"
    facts = read_facts(text)
    assert (facts["transformers_range"], facts["range_from"]) == (
        str(SpecifierSet(spec)),
        f"llamafactory {release}",
    )
    candidates = {c["id"]: c for c in qd.explain(text).candidates}
    mask = candidates["qwen2_vl-image-mask-device"]
    assert any(
        f"llamafactory {release}'s requirement" in e and "includes affected" in e for e in mask["evidence"]
    )
    assert "qwen2_vl-rope-index-input-mask" not in candidates  # its releases are outside the range
    # each tool as people spell it; a name without a version says nothing
    swift = next(r for r, s in pins()["ms-swift"].items() if s)
    for spelled in (f"ms-swift=={swift}", f"ms_swift {swift}", f"swift version: {swift}"):
        assert read_facts(f"{spelled}\n{error}")["range_from"] == f"ms-swift {swift}", spelled
    assert read_facts(f"trained with ms-swift\n{error}")["range_from"] is None
    # a stated transformers version is what ran; a tool release the table lacks says nothing
    assert read_facts(f"transformers version: 4.51.3\n{text}")["range_from"] is None
    unknown = read_facts(text.replace(release, "99.0.0"))
    assert (unknown["transformers_range"], unknown["range_from"]) == (None, None)

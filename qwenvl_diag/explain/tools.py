"""The packages built on transformers that a pasted failure runs through (quantizers, pipelines, ComfyUI
nodes, serving engines, trainers, evaluation kits, DeepSpeed): whose code raised, what such code does to
devices (the mechanism, in the kit's words), where to report it and the kit's nearest scenario. Pure text.

A tool's frame is where its package sits in a path (`.../site-packages/awq/quantize/quantizer.py`); a tool
only named in the words ("quantizing with AutoAWQ") counts as named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .text import installed_package, raising_frame

TOOL_KEYS = ("tool", "role", "where", "mechanism", "report", "scenario")
"""Keys of each `facts["tools"]` row: `tool` the package ("autoawq"), `role` ("quantizer", "pipeline",
"node", "server", "trainer", "evaluation", "zero3", "remote code", "preprocessing", "model library",
"model copy": a package's own copy of a Qwen model file, named by the folder it sits in),
`where` "raised" (the deepest frame outside torch and accelerate is the tool's), "called" (the tool's frame
called the code that raised), "named" (the text names it, no frame) or "listed" (only in a list of versions,
`deepspeed: 0.16.5`, `DeepSpeed version: not installed`: installed is not used), `mechanism`, `report`
(where to report it), `scenario` (the kit's preset nearest to it, or None when the kit cannot run that
code)."""

# what each role's code does to devices, the mechanisms the kit simulates named in its words
_MECHANISMS = {
    "quantizer": (
        "a layer-by-layer quantizer moves one block at a time to the GPU and calls it with what it "
        "captured before (hidden states, the rotary's position embeddings, the attention mask) on another "
        "device, or moves modules with `.to()` after `device_map` dispatch while accelerate's hooks still "
        "send inputs to the old device; a weight or a buffer (the rotary's `inv_freq`) left on the CPU "
        "meets inputs on the GPU"
    ),
    "quantized weights": (
        "the quantized weights' state (`quant_state`, absmax, scales) or an unquantized module stays on "
        "another device than the layer's input, usually after moving a quantized model with `.to()` or "
        "offloading part of it to the CPU"
    ),
    "pipeline": (
        "the pipeline puts its components on different devices (`enable_model_cpu_offload`, a "
        "`device_map`, a text encoder loaded on its own) and hands one component's output to the next on "
        "another device, or a component's weights stay on the CPU while its inputs go to the GPU"
    ),
    "node": (
        "the node loads the model on one device (or ComfyUI's model management offloads it to the CPU "
        "between runs) and moves its inputs to another; a weight, a buffer or the processor's tensors stay "
        "on the CPU"
    ),
    "server": (
        "the serving engine runs its own model code and places it itself (its workers, tensor "
        "parallelism); transformers' device_map and modeling code are not the code that raised"
    ),
    "trainer": (
        "the trainer's own code (its patch of the model, its collator, its sharding or offload settings) "
        "puts a tensor on another device than the module that takes it"
    ),
    "evaluation": (
        "the evaluation kit loads the model with its own `device_map` and moves the inputs to a device of "
        "its choosing (often `cuda` or the first GPU), not to the device of the module that takes them"
    ),
    "zero3": (
        "ZeRO-3 partitions the parameters and gathers each module's around its forward; a parameter or a "
        "buffer read outside its module's forward (or a buffer ZeRO-3 does not manage, left on the CPU) "
        "meets the gathered GPU tensors"
    ),
    "remote code": (
        "the checkpoint's own modeling code (`trust_remote_code=True`, run from `transformers_modules`), "
        "not transformers', places tensors on the device it chose"
    ),
    "preprocessing": (
        "the preprocessing returns tensors on the CPU (or on the device it was given), and they meet the "
        "model's GPU tensors unmoved"
    ),
    "model copy": (
        "the package runs its own copy of transformers' Qwen model code (copied, patched or generated from "
        "it), with its own device handling: transformers' release is not the code that raised, and a "
        "transformers fix reaches it only when the package copies it"
    ),
    "model library": (
        "the library wraps the model in its own class (a subclass of transformers' Qwen-VL model with its "
        "own forward or heads, an embedding or retrieval model) and moves the inputs to the device it "
        "reads off the model (its first parameter's), not to the device of the module that takes them "
        "under a `device_map`"
    ),
}


@dataclass(frozen=True)
class _Tool:
    name: str
    role: str
    package: str  # the folder its code sits in, as a path component (a regex)
    named: str  # how a text names it (a regex)
    report: str
    scenario: str | None


_ISSUES = "https://github.com/{}/issues"
_TOOLS = (
    _Tool(
        "autoawq",
        "quantizer",
        r"awq",
        r"AutoAWQ|\bimport awq\b|\bfrom awq\b",
        _ISSUES.format("casper-hansen/AutoAWQ"),
        "inputs-on-cpu",
    ),
    _Tool(
        "gptqmodel",
        "quantizer",
        r"gptqmodel",
        r"GPTQModel",
        _ISSUES.format("ModelCloud/GPTQModel"),
        "inputs-on-cpu",
    ),
    _Tool(
        "auto-gptq",
        "quantizer",
        r"auto_gptq",
        r"auto[-_]?gptq",
        _ISSUES.format("AutoGPTQ/AutoGPTQ"),
        "inputs-on-cpu",
    ),
    _Tool(
        "auto-round",
        "quantizer",
        r"auto_round",
        r"auto[-_]round",
        _ISSUES.format("intel/auto-round"),
        "inputs-on-cpu",
    ),
    _Tool(
        "llm-compressor",
        "quantizer",
        r"llmcompressor",
        r"llm-?compressor",
        _ISSUES.format("vllm-project/llm-compressor"),
        "inputs-on-cpu",
    ),
    _Tool(
        "optimum",
        "quantizer",
        r"optimum",
        r"\boptimum\b",
        _ISSUES.format("huggingface/optimum"),
        "inputs-on-cpu",
    ),
    _Tool(
        "bitsandbytes",
        "quantized weights",
        r"bitsandbytes",
        r"bitsandbytes|load_in_[48]bit|\bbnb\b",
        _ISSUES.format("bitsandbytes-foundation/bitsandbytes"),
        "inputs-on-cpu",
    ),
    _Tool(
        "diffusers",
        "pipeline",
        r"diffusers",
        # also by its API: a pipeline class loaded by name, its offload switches
        r"\bdiffusers\b|\b\w*DiffusionPipeline\b|\b\w+Pipeline\.from_pretrained\b"
        r"|\benable_(?:model|sequential)_cpu_offload\b",
        _ISSUES.format("huggingface/diffusers"),
        "inputs-on-cpu",
    ),
    _Tool(
        "comfyui",
        "node",
        r"ComfyUI|comfy|custom_nodes",
        # its model management's words: `cast_to_device`, "dynamic VRAM", its log's "loaded partially"
        r"ComfyUI|\bcomfy|\bcast_to_device\b|\bdynamic[ _-]?vram\b|\bloaded (?:partially|completely)\b",
        _ISSUES.format("comfyanonymous/ComfyUI") + " (or the custom node's repository)",
        "inputs-on-cpu",
    ),
    _Tool(
        "diffsynth-studio",
        "pipeline",
        r"diffsynth",
        r"DiffSynth",
        _ISSUES.format("modelscope/DiffSynth-Studio"),
        "inputs-on-cpu",
    ),
    _Tool(
        "nunchaku", "pipeline", r"nunchaku", r"\bnunchaku\b", _ISSUES.format("nunchaku-tech/nunchaku"), None
    ),
    _Tool("torchao", "quantizer", r"torchao", r"\btorchao\b", _ISSUES.format("pytorch/ao"), "inputs-on-cpu"),
    _Tool("hqq", "quantizer", r"hqq", r"\bHQQ\b", _ISSUES.format("mobiusml/hqq"), "inputs-on-cpu"),
    _Tool(
        "text-generation-inference",
        "server",
        r"text_generation_server",
        r"text-generation-inference|\bTGI\b",
        _ISSUES.format("huggingface/text-generation-inference"),
        None,
    ),
    _Tool(
        "xinference",
        "server",
        r"xinference",
        r"\bxinference\b",
        _ISSUES.format("xorbitsai/inference"),
        "inputs-on-cpu",
    ),
    _Tool(
        "vllm-ascend",
        "server",
        r"vllm_ascend",
        r"vllm[-_]ascend|\bAscendQwen\w+",  # its own model classes: AscendQwen2_5_VisionAttention...
        _ISSUES.format("vllm-project/vllm-ascend"),
        None,
    ),
    _Tool(
        "vllm-omni",
        "server",
        r"vllm_omni",
        r"vllm[-_]omni|vllm serve .*--omni\b",
        _ISSUES.format("vllm-project/vllm-omni"),
        None,
    ),
    _Tool("vllm", "server", r"vllm", r"\bvllm\b", _ISSUES.format("vllm-project/vllm"), None),
    _Tool(
        "tensorrt-llm",
        "server",
        r"tensorrt_llm",
        # and its PyTorch backend's own names (its executor's creators, its Qwen-VL mRoPE cache)
        r"TensorRT-LLM|tensorrt_llm|\btrt-?llm\b|\b(?:create_)?py_executor(?:_creator)?\b|\bkv_cache_creator\b"
        r"|\bmrope_position_deltas_cache\b|\b_prepare_qwen_vl_mrope_config\b",
        _ISSUES.format("NVIDIA/TensorRT-LLM"),
        None,
    ),
    _Tool("sglang", "server", r"sglang", r"\bsglang\b", _ISSUES.format("sgl-project/sglang"), None),
    _Tool("lmdeploy", "server", r"lmdeploy", r"\blmdeploy\b", _ISSUES.format("InternLM/lmdeploy"), None),
    _Tool(
        "deepspeed",
        "zero3",
        r"deepspeed",
        r"deepspeed|\bzero[-_ ]?3\b",
        _ISSUES.format("deepspeedai/DeepSpeed"),
        "qwen3-vl-fsdp2-offload",
    ),
    _Tool(
        "llamafactory",
        "trainer",
        r"llamafactory|llmtuner",
        r"LLaMA-?Factory|LlamaFactory|llamafactory",
        _ISSUES.format("hiyouga/LLaMA-Factory"),
        "qwen3-vl-fsdp2-offload",
    ),
    _Tool(
        "ms-swift",
        "trainer",
        r"swift",
        # and its command line's DeepSpeed shorthand (`--deepspeed zero2`; DeepSpeed and the HF Trainer take a
        # config file there)
        r"ms-swift|\bswift\b|--deepspeed[= ]zero\d",
        _ISSUES.format("modelscope/ms-swift"),
        "qwen3-vl-fsdp2-offload",
    ),
    _Tool(
        "verl", "trainer", r"verl", r"\bverl\b", _ISSUES.format("volcengine/verl"), "qwen3-vl-fsdp2-offload"
    ),
    _Tool(
        "trl",
        "trainer",
        r"trl",
        r"\btrl\b|GRPOTrainer|SFTTrainer|DPOTrainer",
        _ISSUES.format("huggingface/trl"),
        "qwen3-vl-fsdp2-offload",
    ),
    _Tool(
        "peft", "trainer", r"peft", r"\bpeft\b", _ISSUES.format("huggingface/peft"), "qwen3-vl-fsdp2-offload"
    ),
    _Tool(
        "axolotl",
        "trainer",
        r"axolotl",
        r"\baxolotl\b",
        _ISSUES.format("axolotl-ai-cloud/axolotl"),
        "qwen3-vl-fsdp2-offload",
    ),
    _Tool(
        "torchtune",
        "trainer",
        r"torchtune",
        r"\btorchtune\b",
        _ISSUES.format("pytorch/torchtune"),
        "qwen3-vl-fsdp2-offload",
    ),
    _Tool(
        "openrlhf",
        "trainer",
        r"openrlhf",
        r"\bOpenRLHF\b",
        _ISSUES.format("OpenRLHF/OpenRLHF"),
        "qwen3-vl-fsdp2-offload",
    ),
    _Tool(
        "xtuner",
        "trainer",
        r"xtuner",
        r"\bxtuner\b",
        _ISSUES.format("InternLM/xtuner"),
        "qwen3-vl-fsdp2-offload",
    ),
    _Tool(
        "mindspeed-mm",
        "trainer",
        r"mindspeed(?:_mm)?",
        r"MindSpeed",
        "https://gitee.com/ascend/MindSpeed-MM/issues",
        "qwen3-vl-fsdp2-offload",
    ),
    _Tool("unsloth", "trainer", r"unsloth(?:_zoo)?", r"\bunsloth", _ISSUES.format("unslothai/unsloth"), None),
    _Tool(
        "lmms-eval",
        "evaluation",
        r"lmms_eval",
        r"lmms[-_]eval",
        _ISSUES.format("EvolvingLMMs-Lab/lmms-eval"),
        "inputs-on-cpu",
    ),
    _Tool(
        "vlmevalkit",
        "evaluation",
        r"vlmeval",
        r"VLMEvalKit|\bvlmeval\b",
        _ISSUES.format("open-compass/VLMEvalKit"),
        "inputs-on-cpu",
    ),
    _Tool(
        "colpali-engine",
        "model library",
        r"colpali_engine",
        r"colpali|ColQwen",
        _ISSUES.format("illuin-tech/colpali"),
        "inputs-on-cpu",
    ),
    _Tool(
        "sentence-transformers",
        "model library",
        r"sentence_transformers",
        r"sentence[-_]transformers|SentenceTransformer\b",
        _ISSUES.format("UKPLab/sentence-transformers"),
        "inputs-on-cpu",
    ),
    _Tool(
        "remote-code",
        "remote code",
        r"transformers_modules",
        r"trust_remote_code",
        "the checkpoint's repository (its modeling file)",
        None,
    ),
    _Tool(
        "qwen-vl-utils",
        "preprocessing",
        r"qwen_vl_utils",
        r"(?!)",
        _ISSUES.format("QwenLM/Qwen3-VL"),
        "inputs-on-cpu",
    ),
    _Tool(
        "qwen-omni-utils",
        "preprocessing",
        r"qwen_omni_utils",
        r"(?!)",
        _ISSUES.format("QwenLM/Qwen2.5-Omni"),
        "inputs-on-cpu",
    ),
)
# what follows a package's name in a list of versions: ": 0.16.5", "==0.7.2", " version: not installed"
_VERSION_AFTER = re.compile(
    r"[`'\"]?(?:\s+version)?(?:\s*\([^)]*\))?\s*(?:[:=]=?|\s)\s*[`'\"]?(?:v?\d+\.\d+|not installed)",
    re.IGNORECASE,
)
_NOT_INSTALLED = re.compile(r"[`'\"]?(?:\s+version)?\s*[:=]?\s*not installed", re.IGNORECASE)
# what each role's tool is used for, in words: a listed tool whose activity the text speaks of is named
_ACTIVITIES = {
    "quantizer": r"quantiz",
    "quantized weights": r"quantiz|\b(?:4|8)-?bit\b",
    "pipeline": r"\bpipeline\b",
    "node": r"\bnodes?\b|\bworkflow",
    "server": r"\bserv(?:e|er|ing)\b",
    "trainer": r"\btrain|fine-?tun",
    "evaluation": r"\beval|benchmark",
    "zero3": r"zero[-_ ]?3",
    "remote code": r"trust_remote_code",
    "preprocessing": r"process_vision_info|process_mm_info",
    "model library": r"\bembed|retriev|\.encode\(",
}


def _frame_of(tool: _Tool, frame: dict[str, Any]) -> bool:
    return re.search(rf"[/\\](?:{tool.package})[/\\]", frame["file"]) is not None


def tools_in(frames: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """The tools `text` runs through, the one whose code raised first, then those that called it (deepest
    first), then those only named (`TOOL_KEYS` rows)."""
    raising = raising_frame(frames)
    found = []
    for tool in _TOOLS:
        own = [index for index, frame in enumerate(frames) if _frame_of(tool, frame)]
        if raising is not None and _frame_of(tool, raising):
            where, depth = "raised", len(frames)
        elif own:
            where, depth = "called", own[-1]
        elif mentions := [
            m for m in re.finditer(tool.named, text, re.IGNORECASE) if not _NOT_INSTALLED.match(text, m.end())
        ]:
            # a version in a list says installed, not used, unless the text speaks of what the tool does
            listed = all(_VERSION_AFTER.match(text, m.end()) for m in mentions)
            listed = listed and not re.search(_ACTIVITIES[tool.role], text, re.IGNORECASE)
            where, depth = ("listed", -2) if listed else ("named", -1)
        else:
            continue
        row = {
            "tool": tool.name,
            "role": tool.role,
            "where": where,
            "mechanism": _MECHANISMS[tool.role],
            "report": tool.report,
            "scenario": tool.scenario,
        }
        found.append((depth, row))
    if copy := _model_copy(frames, raising):
        found.append(copy)
    return [row for _, row in sorted(found, key=lambda pair: -pair[0])]


# a Qwen model file by its name, copied or generated (modeling_qwen2_5_vl.py,
# patched_modeling_qwen3_5_moe_gpu.py)
_MODEL_FILE = re.compile(r"modeling_qwen\w*\.py$")
# a relative path's first folder is its package, unless it is one every project has
_RELATIVE = re.compile(r"^(?![/\\~]|\w:)(?P<package>[A-Za-z_][\w.-]*)[/\\]")
_ANY_PROJECTS = frozenset(("src", "lib", "libs", "model", "models", "modules", "code", "scripts", "app"))


def _model_copy(
    frames: list[dict[str, Any]], raising: dict[str, Any] | None
) -> tuple[int, dict[str, Any]] | None:
    """(depth, `TOOL_KEYS` row) for the deepest frame in a package's own copy of a Qwen model file
    (`veomni/models/.../patched_modeling_qwen3_5_moe_gpu.py`); None when there is none, its package is
    not named by its path or is transformers, or a known tool (remote code among them) claims it."""
    for depth in reversed(range(len(frames))):
        file = frames[depth]["file"]
        if not _MODEL_FILE.search(file):
            continue
        package = installed_package(file) or ((match := _RELATIVE.search(file)) and match["package"])
        package = package.lower().replace("_", "-") if package else None
        if package in (None, "transformers", *_ANY_PROJECTS) or any(
            _frame_of(tool, frames[depth]) for tool in _TOOLS
        ):
            return None
        row = {
            "tool": package,
            "role": "model copy",
            "where": "raised" if frames[depth] is raising else "called",
            "mechanism": _MECHANISMS["model copy"],
            "report": f"{package}'s issue tracker (the package that holds {file.rsplit('/', 1)[-1]})",
            "scenario": None,
        }
        return (len(frames) if frames[depth] is raising else depth), row
    return None

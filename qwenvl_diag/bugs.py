"""The known-bug catalogue: transformers bugs that raise "Expected all tensors to be on the same device"
for Qwen-VL models, and a matcher that recognises a failure location as one of them.

Each entry names the library line that raises (`file`, `function`, `code`, checked by the tests
against the installed source of every affected release the kit's stacks hold) and the releases it
affects. Sources: `../shared/research/BUG_FACTS.md` and the transformers source itself.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from ._compat import TRANSFORMERS_VERSION
from .errors import InvalidArgumentError

if TYPE_CHECKING:
    import pandas as pd

KNOWN_BUG_COLUMNS = [
    "id",
    "title",
    "families",
    "affected",
    "trigger",
    "location",
    "code",
    "variants",
    "fixed_in",
    "references",
    "signature",
    "scenario",
    "workaround",
    "kind",
]
"""Columns of `known_bugs()`, one row per catalogue entry. `families` is a list of family names
("qwen2_vl", "qwen2_5_vl", "qwen3_vl"); `affected` a version specifier string (">=4.49.0,<4.52.1");
`location` "models/<family>/<file>.py: <function>" (the path inside the transformers package); `code` a
substring of the source line that raises; `variants` the same line as other releases write it (a list,
usually empty); `fixed_in` the first fixed release (None: not a transformers bug, or open upstream);
`references` a list of issue / pull-request / source URLs; `signature` the error as the kit's
reproduction raises it (a dict: `ErrorSignature`'s fields, `reported_ops` the other ops public reports
show it in; None for a silent bug); `scenario` the name
of the `Scenario.preset` that reproduces it; `workaround` what to do short of upgrading, naming the
kit's fixes (`qd.fixes()`) for it; `kind` one of `BUG_KINDS`."""

BUG_KINDS = ("error", "silent", "usage")
"""What an entry is: "error" a transformers bug that raises a device error, "silent" a transformers bug
that raises nothing but computes wrong values (found from what the kit captures), "usage" a device error
of the caller's own making (e.g. inputs left on the CPU), in every release."""

TRANSFORMERS = "https://github.com/huggingface/transformers"
MASK_CODE = (
    "diagonal_attend_mask = torch.arange(target_length, device=device) > cache_position.reshape(-1, 1)"
)
MASK_FUNCTION = "_prepare_4d_causal_attention_mask_with_cache_position"
MASK_TRIGGER = (
    "generate() (it fails at the prefill step; a plain forward passes) on a padded batch with sdpa "
    "attention (eager: any input), any modality, with the vision tower on the main GPU and embed_tokens "
    "on another GPU: the mask is built on the embeddings' GPU from a cache_position that accelerate's "
    "root hook put on the main GPU."
)
MASK_REFERENCES = (f"{TRANSFORMERS}/issues/37606", f"{TRANSFORMERS}/pull/37612")


@dataclass(frozen=True)
class ErrorSignature:
    """How a bug's error looks where the kit reproduces it: `op` the ATen op that mixed devices ("gt"),
    `devices` the kind of pair, "gpu/gpu", "gpu/cpu" or "gpu/meta" (an offloaded weight's placeholder),
    `wrapper` the CUDA wrapper its message names
    (None: TensorIterator's message names none) and `argument` the argument the message names; `reported_ops`
    the other ops public reports of the same bug show it in (another path through the same code), which
    `explain` reads as its op too."""

    op: str
    devices: str
    wrapper: str | None = None
    argument: str | None = None
    reported_ops: tuple[str, ...] = ()

    @property
    def ops(self) -> tuple[str, ...]:
        """`op`, then `reported_ops`."""
        return (self.op, *self.reported_ops)

    def row(self) -> dict:
        return {
            "op": self.op,
            "devices": self.devices,
            "wrapper": self.wrapper,
            "argument": self.argument,
            "reported_ops": list(self.reported_ops),
        }


@dataclass(frozen=True)
class KnownBug:
    """One catalogue entry. `file` is the path inside the transformers package; `code` the line that
    raises, `variants` the same line as other releases write it."""

    id: str
    title: str
    families: tuple[str, ...]
    affected: str
    trigger: str
    file: str
    function: str
    code: str
    fixed_in: str | None
    references: tuple[str, ...]
    signature: ErrorSignature | None
    scenario: str
    workaround: str
    kind: str = "error"
    variants: tuple[str, ...] = ()
    # the same function and line in a generated copy of `file` (modular: Qwen3-VL-MoE's from Qwen3-VL's)
    copies: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        """`file`, then its `copies`."""
        return (self.file, *self.copies)

    @property
    def runs_in(self) -> tuple[str, ...]:
        """The model directories its code runs in: its `families`, then those of its `copies`."""
        copies = tuple(file.split("/")[1] for file in self.copies if file.startswith("models/"))
        return tuple(dict.fromkeys(self.families + copies))

    def in_file(self, path: str) -> bool:
        """Whether `path` (any machine's) is one of the entry's `files`."""
        return any(same_file(path, file) for file in self.files)

    @property
    def location(self) -> str:
        return f"{self.file}: {self.function}"

    @property
    def codes(self) -> tuple[str, ...]:
        """The line in each of its forms: `code`, then `variants`."""
        return (self.code, *self.variants)

    def quoted_in(self, text: str) -> bool:
        """Whether `text` contains one of the entry's code forms (whitespace-insensitive)."""
        return any(squeeze(code) in squeeze(text) for code in self.codes)

    def affects(self, version: str | Version) -> bool:
        """Whether transformers `version` is in the affected range. Dev and rc builds count as the
        release they lead to (4.52.0.dev0 as 4.52.0), as in `transformers_at_least`."""
        return SpecifierSet(self.affected).contains(Version(_version(version).base_version))

    def row(self) -> dict:
        """The entry as a `known_bugs()` row: lists for `families` and `references`."""
        return {
            "id": self.id,
            "title": self.title,
            "families": list(self.families),
            "affected": self.affected,
            "trigger": self.trigger,
            "location": self.location,
            "code": self.code,
            "variants": list(self.variants),
            "fixed_in": self.fixed_in,
            "references": list(self.references),
            "signature": self.signature.row() if self.signature is not None else None,
            "scenario": self.scenario,
            "workaround": self.workaround,
            "kind": self.kind,
        }


def _causal_mask_bug(family: str, name: str, affected: str, scenario: str) -> KnownBug:
    """The batched-generate causal-mask bug as it appears in one family's modeling file."""
    return KnownBug(
        id=f"{family}-batched-causal-mask",
        title=f"{name} batched generate across GPUs: the causal mask mixes two GPUs",
        families=(family,),
        affected=affected,
        trigger=MASK_TRIGGER,
        file=f"models/{family}/modeling_{family}.py",
        function=MASK_FUNCTION,
        code=MASK_CODE,
        fixed_in="4.52.1",
        references=MASK_REFERENCES,
        # Tensor.gt of an arange on the embeddings' GPU and cache_position on the main GPU
        signature=ErrorSignature(op="gt", devices="gpu/gpu"),
        scenario=scenario,
        workaround=(
            "keep the vision tower and embed_tokens on one GPU (fix vision_with_embeddings: re-plan with "
            "them together), run on one GPU (single_device), or patch the model instance (rope_mask_hotfix)"
        ),
    )


APART_WORKAROUND = (
    "keep the vision tower and embed_tokens on one GPU (fix vision_with_embeddings), or run on one GPU "
    "(single_device)"
)
ROPE_DELTAS_TRIGGER = (
    "generate() on a text-only prompt (no image or video), any batch size, with the vision tower on the "
    "main GPU and embed_tokens on another: forward moves attention_mask to the embeddings' GPU before "
    "get_rope_index, so the rope_deltas of a text-only prompt are made there, and the first decode step "
    "adds them to cache_position, which accelerate's root hook put on the main GPU. The prefill passes."
)
ROPE_DELTAS_REFERENCES = (
    "https://github.com/QwenLM/Qwen3-VL/issues/765",
    f"{TRANSFORMERS}/blob/v4.53.0/src/transformers/models/qwen2_5_vl/modeling_qwen2_5_vl.py",
)
ROPE_DELTAS_WORKAROUND = (
    "keep rope_deltas where cache_position is (fix rope_deltas_to_cache_device, the public "
    "`self.rope_deltas = rope_deltas.to(cache_position.device)` patch, on the model instance), keep the "
    "vision tower and embed_tokens on one GPU (vision_with_embeddings), or run on one GPU (single_device)"
)


def _rope_deltas_bug(
    family: str,
    name: str,
    affected: str,
    code: str,
    scenario: str,
    *,
    trigger: str = ROPE_DELTAS_TRIGGER,
    references: tuple[str, ...] = ROPE_DELTAS_REFERENCES,
    workaround: str = ROPE_DELTAS_WORKAROUND,
) -> KnownBug:
    """The text-only generate bug (rope_deltas on the embeddings' GPU) as one family's forward has it."""
    return KnownBug(
        id=f"{family}-text-generate-rope-deltas",
        title=f"{name} text-only generate across GPUs: rope_deltas and cache_position on two GPUs",
        families=(family,),
        affected=affected,
        trigger=trigger,
        file=f"models/{family}/modeling_{family}.py",
        function="forward",
        code=code,
        fixed_in="4.53.0",
        references=references,
        signature=ErrorSignature(op="add", devices="gpu/gpu"),
        scenario=scenario,
        workaround=workaround,
    )


def _modeling_files(families: tuple[str, ...]) -> tuple[str, ...]:
    """Each family's modeling file inside transformers (a MoE variant's is a generated copy)."""
    return tuple(f"models/{family}/modeling_{family}.py" for family in families)


# the training setup of BUG_HISTORY I, shared by the families whose text rotary has it
HOST_INV_FREQ_SETUP = (
    "FSDP2 with CPUOffloadPolicy in a trainer that keeps the non-persistent buffers on the host "
    "(SkyRL's _sync_non_persistent_buffers, VeOmni): FSDP2 gathers parameters onto the rank's GPU, "
    "never buffers, so the text rotary embedding's inv_freq stays on the CPU and its matmul with "
    "the GPU position ids fails in bmm"
)


def _host_inv_freq_bug(
    family: str,
    name: str,
    affected: str,
    fixed_in: str,
    references: tuple[str, ...],
    history: str,
    scenario: str,
    *,
    again: bool = False,
    moe: tuple[str, ...] = (),
    copies: tuple[str, ...] = (),
) -> KnownBug:
    """BUG_HISTORY I: a text rotary multiplies a host inv_freq with the GPU position ids (Qwen3-VL's, and
    the same code in Qwen3.5's and Qwen3-Omni's). `moe`: kit families whose modeling file is a copy;
    `copies`: transformers model types (not kit families) whose modeling file is one (Qwen3-VL-MoE's)."""
    families = (family, *moe)
    files = _modeling_files((*families, *copies))
    return KnownBug(
        id=f"{family}-fsdp2-host-inv-freq{'-again' if again else ''}",
        title=f"{name} under FSDP2 CPU offload, buffers on the host: the text rotary's inv_freq on the CPU",
        families=families,
        affected=affected,
        trigger=f"{HOST_INV_FREQ_SETUP}. {history}.",
        file=files[0],
        copies=files[1:],
        function="forward",
        code="freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(2, 3)",
        fixed_in=fixed_in,
        references=references,
        signature=ErrorSignature(op="bmm", devices="gpu/cpu", wrapper="wrapper_CUDA_bmm", argument="mat2"),
        scenario=scenario,
        workaround=(
            "upgrade transformers (fix upgrade_transformers), or move the non-persistent buffers to the "
            "rank's GPU after loading (verl's "
            "fsdp2_load_full_state_dict does: buf.data = buf.data.to(device)), or train without CPU offload"
        ),
    )


def _host_inv_freq_bugs(
    family: str,
    name: str,
    since: str,
    scenario: str,
    moe: tuple[str, ...] = (),
    copies: tuple[str, ...] = (),
) -> tuple[KnownBug, ...]:
    """I in `family`, then again: PR 45861 fixed it in 5.9.0, 5.17.0 undid the fix, 5.19.0 redid it
    (each range checked against the releases' wheels). `moe` and `copies` as `_host_inv_freq_bug`'s."""
    return (
        _host_inv_freq_bug(
            family,
            name,
            f">={since},<5.9.0",
            "5.9.0",
            (f"{TRANSFORMERS}/pull/45861", f"{TRANSFORMERS}/issues/45859"),
            "PR 45861 moves inv_freq to x.device (5.9.0)",
            scenario,
            moe=moe,
            copies=copies,
        ),
        _host_inv_freq_bug(
            family,
            name,
            ">=5.17.0,<5.19.0",
            "5.19.0",
            (f"{TRANSFORMERS}/blob/v5.17.0/src/transformers/{_modeling_files((family,))[0]}",),
            "5.17.0 dropped PR 45861's .to(x.device); 5.19.0's rotary multiplies by inv_freq.to(x.device)",
            scenario,
            again=True,
            moe=moe,
            copies=copies,
        ),
    )


EMBED_CODES = (
    "self.model.embed_tokens(input_ids)",
    "self.get_input_embeddings()(input_ids)",
    "self.language_model.embed_tokens(input_ids)",
)
# the Omni files also hold a talker, whose codec embedding is looked up the same way: the thinker's line
OMNI_EMBED_CODES = ("inputs_embeds = self.get_input_embeddings()(input_ids)",)


def _inputs_on_cpu_bug(
    family: str,
    name: str,
    since: str,
    scenario: str,
    moe: tuple[str, ...] = (),
    codes: tuple[str, ...] = EMBED_CODES,
    copies: tuple[str, ...] = (),
) -> KnownBug:
    """Inputs left on the CPU with a model on one GPU: the first embedding refuses a CPU index. `moe`:
    families whose modeling file is a copy of `family`'s; `codes` the line, then its variants; `copies`
    model directories of the family's checkpoints whose file is a generated copy (Qwen3-VL's MoE)."""
    files = _modeling_files((family, *moe, *copies))
    return KnownBug(
        id=f"{family}-inputs-on-cpu",
        title=f"{name} on one GPU with the inputs left on the CPU: embed_tokens gets a CPU index",
        families=(family, *moe),
        affected=f">={since}",
        trigger=(
            "the model on a single device (device_map='auto' or {'': 0} on one GPU, or model.to('cuda')) "
            "places it without accelerate hooks, so nothing moves the inputs: input_ids left on the CPU "
            "reach embed_tokens, whose weight is on the GPU. Every release; not a transformers bug."
        ),
        file=files[0],
        copies=files[1:],
        function="forward",
        code=codes[0],
        variants=codes[1:],
        fixed_in=None,
        references=(f"{TRANSFORMERS}/blob/main/docs/source/en/models/{family}.md",),
        # torch.embedding -> index_select: the index (input_ids) on the CPU, the weight on the GPU
        signature=ErrorSignature(
            op="index_select", devices="gpu/cpu", wrapper="wrapper_CUDA__index_select", argument="index"
        ),
        scenario=scenario,
        workaround=(
            "move the inputs to the model's device before the call: inputs = inputs.to(model.device) "
            "(fix inputs_to_execution_device)"
        ),
        kind="usage",
    )


def _pixels_on_cpu_bug(
    family: str, name: str, scenario: str, moe: tuple[str, ...] = (), copies: tuple[str, ...] = ()
) -> KnownBug:
    """generate() with the inputs left on the CPU of a one-GPU model, from 5.18: the images are encoded
    before the prefill, and the vision tower's patch convolution gets the CPU pixel_values (`moe` and
    `copies` as `_inputs_on_cpu_bug`'s)."""
    files = _modeling_files((family, *moe, *copies))
    return KnownBug(
        id=f"{family}-pixel-values-on-cpu",
        title=f"{name} generate on one GPU, inputs left on the CPU: the patch convolution gets CPU pixels",
        families=(family, *moe),
        affected=">=5.18.0",
        trigger=(
            "generate() with image or video inputs left on the CPU and the model on a single device (no "
            "accelerate hooks): from 5.18.0 generate encodes the images before the prefill "
            "(_prepare_multimodal_encoder_kwargs_for_generation), so the vision tower's Conv3d meets the CPU "
            "pixel_values first, and PyTorch's convolution reports a type mismatch, not a device one. A "
            "forward() with the same inputs fails at embed_tokens (the inputs-on-cpu entry)."
        ),
        file=files[0],
        copies=files[1:],
        function="forward",
        code="hidden_states = self.proj(hidden_states.to(dtype=target_dtype))",
        fixed_in=None,
        references=(f"{TRANSFORMERS}/blob/v5.18.0/src/transformers/generation/utils.py",),
        # ATen's convolution checks the input and weight types before any device check
        signature=ErrorSignature(op="conv3d", devices="gpu/cpu", argument="weight"),
        scenario=scenario,
        workaround=(
            "move the inputs to the model's device before the call: inputs = inputs.to(model.device) "
            "(fix inputs_to_execution_device)"
        ),
        kind="usage",
    )


OMNI_APART_WORKAROUND = (
    "run on one GPU (single_device), or upgrade (upgrade_transformers: 4.53.0 no longer moves "
    "attention_mask before the rope index); keeping the vision tower with embed_tokens does not help, the "
    "audio tower is the one apart"
)

VISION_SPLIT_TRIGGER = (
    "a device map that puts the vision tower's patch_embed on one GPU and pos_embed on another (an "
    "explicit map; accelerate's planner does it to a tiny model's budgets, never to the shipped "
    "checkpoints' plans, which keep model.visual whole): the vision model has no hook of its own, so "
    "grid_thw stays where the root hook put the inputs (patch_embed's GPU), and the interpolated position "
    "embeddings meet the patches across two GPUs, in forward and generate alike."
)
VISION_SPLIT_WORKAROUND = (
    "keep the vision tower's patch_embed and pos_embed on one GPU (map model.visual as one unit, or let "
    "the planner place it), or run on one GPU (single_device)"
)

VIDEO_REFERENCES = (
    f"{TRANSFORMERS}/pull/37597",
    "https://github.com/QwenLM/Qwen3-VL/issues/270",
    "https://github.com/QwenLM/Qwen3-VL/issues/1131",
    "https://github.com/EvolvingLMMs-Lab/lmms-eval/issues/643",
)

CATALOGUE: tuple[KnownBug, ...] = (
    KnownBug(
        id="qwen2_5_vl-video-second-per-grid-ts",
        title="Qwen2.5-VL video: get_rope_index multiplies a CPU arange by a CUDA second_per_grid_ts",
        families=("qwen2_5_vl",),
        affected=">=4.49.0,<4.52.1",
        trigger=(
            "video input whose second_per_grid_ts is a tensor on a GPU (inputs.to('cuda'), or any tensor "
            "under a device map: accelerate's root hook moves it); one GPU is enough. get_rope_index builds "
            "its time index with torch.arange on the CPU and multiplies it by a 0-dim CUDA tensor, which "
            "PyTorch refuses (only 0-dim CPU tensors are exempt). The list form never fails."
        ),
        file="models/qwen2_5_vl/modeling_qwen2_5_vl.py",
        function="get_rope_index",
        code="time_tensor = expanded_range * second_per_grid_t",
        fixed_in="4.52.1",
        references=VIDEO_REFERENCES,
        # Tensor.mul of the CPU arange and the 0-dim CUDA second_per_grid_t; PR #37597's report shows the
        # same failure at the torch.cat of the position ids (wrapper_CUDA_cat, argument tensors)
        signature=ErrorSignature(op="mul", devices="gpu/cpu", reported_ops=("cat",)),
        scenario="seed-video",
        workaround=(
            "hand second_per_grid_ts to the model as a list of floats (fix second_per_grid_ts_as_list), "
            "or patch the model instance (rope_mask_hotfix)"
        ),
    ),
    _causal_mask_bug("qwen2_5_vl", "Qwen2.5-VL", ">=4.49.0,<4.52.1", "seed-batched"),
    # Before 4.47 Qwen2-VL's generation wrapper did not pass cache_position (BUG_FACTS.md)
    _causal_mask_bug("qwen2_vl", "Qwen2-VL", ">=4.47.0,<4.52.1", "qwen2-vl-batched"),
    # the add runs before the .to(); 4.53.0 keeps the line but no longer moves attention_mask
    _rope_deltas_bug(
        "qwen2_5_vl",
        "Qwen2.5-VL",
        ">=4.49.0,<4.53.0",
        "(cache_position[0] + self.rope_deltas).to(inputs_embeds.device)",
        "text-generate",
    ),
    # 4.45-4.46 call get_rope_index from prepare_inputs_for_generation, not after the move; on 4.47 the
    # same prompt fails a line later (qwen2_vl-text-generate-position-ids)
    _rope_deltas_bug(
        "qwen2_vl",
        "Qwen2-VL",
        ">=4.48.0,<4.53.0",
        "delta = cache_position[0] + self.rope_deltas if cache_position is not None else 0",
        "qwen2-vl-text-generate",
    ),
    KnownBug(
        id="qwen2_vl-text-generate-position-ids",
        title="Qwen2-VL 4.47 text-only generate across GPUs: decode positions and their delta on two GPUs",
        families=("qwen2_vl",),
        affected=">=4.47.0,<4.48.0",
        trigger=(
            "generate() on a text-only prompt, with the vision tower on the main GPU and embed_tokens on "
            "another: at the first decode step the delta (cache_position[0] + rope_deltas) is on the main "
            "GPU and the new positions, made with torch.arange on the embeddings' GPU, are added to it. "
            "From 4.48.0 the same prompt fails a line earlier (qwen2_vl-text-generate-rope-deltas)."
        ),
        file="models/qwen2_vl/modeling_qwen2_vl.py",
        function="forward",
        code="position_ids = position_ids.add(delta)",
        fixed_in="4.48.0",
        references=(f"{TRANSFORMERS}/blob/v4.47.1/src/transformers/models/qwen2_vl/modeling_qwen2_vl.py",),
        signature=ErrorSignature(op="add", devices="gpu/gpu"),
        scenario="qwen2-vl-text-generate",
        workaround=(
            f"{APART_WORKAROUND}; moving rope_deltas does not help here (the delta is already on the "
            "main GPU)"
        ),
    ),
    KnownBug(
        id="qwen2_vl-image-mask-device",
        title="Qwen2-VL image/video merge across GPUs: masked_scatter gets the token mask on another GPU",
        families=("qwen2_vl",),
        affected=">=4.45.0,<4.46.0",
        trigger=(
            "image or video input, any batch, forward or generate (the prefill), with embed_tokens on "
            "another GPU than the main one (the vision tower's): the image mask is built from input_ids "
            "on the main GPU and handed to inputs_embeds.masked_scatter on the embeddings' GPU unmoved. "
            "Tied embeddings (Qwen2-VL-2B) can put embed_tokens on the last GPU, with lm_head."
        ),
        file="models/qwen2_vl/modeling_qwen2_vl.py",
        function="forward",
        code="inputs_embeds = inputs_embeds.masked_scatter(image_mask, image_embeds)",
        variants=("inputs_embeds = inputs_embeds.masked_scatter(video_mask, video_embeds)",),
        fixed_in="4.46.0",
        references=(f"{TRANSFORMERS}/issues/33816", f"{TRANSFORMERS}/pull/33851"),
        signature=ErrorSignature(
            op="masked_scatter", devices="gpu/gpu", wrapper="wrapper_CUDA__masked_scatter_", argument="mask"
        ),
        scenario="qwen2-vl-image-apart",
        workaround=APART_WORKAROUND,
    ),
    KnownBug(
        id="qwen2_vl-rope-index-input-mask",
        title="Qwen2-VL get_rope_index across GPUs: input_ids indexed by an attention mask on another GPU",
        families=("qwen2_vl",),
        # from 4.47 forward calls get_rope_index after moving attention_mask to the embeddings' GPU
        affected=">=4.47.0,<4.49.0",
        trigger=(
            "image or video input, forward or generate (the prefill), with embed_tokens on another GPU "
            "than the main one: forward moves attention_mask to the embeddings' GPU, then get_rope_index "
            "indexes input_ids (main GPU) with it, which PyTorch's indexing refuses."
        ),
        file="models/qwen2_vl/modeling_qwen2_vl.py",
        function="get_rope_index",
        code="input_ids = input_ids[attention_mask[i] == 1]",
        fixed_in="4.49.0",
        references=(f"{TRANSFORMERS}/pull/35763",),
        signature=ErrorSignature(op="index", devices="gpu/gpu"),
        scenario="qwen2-vl-image-apart",
        workaround=APART_WORKAROUND,
    ),
    KnownBug(
        id="qwen3_vl-generate-split-vision-cpu-grid",
        title="Qwen3-VL generate with the vision tower split across GPUs: images encoded with CPU inputs",
        families=("qwen3_vl",),
        # found by qd.sweep (Qwen3-VL-2B on 8 x 24 GiB, auto/balanced); bisected: 5.17.0 passes, 5.18.0 fails
        affected=">=5.18.0",
        trigger=(
            "generate() with image or video inputs left on the CPU (accelerate's hooks are expected to move "
            "them) and a vision tower split across GPUs by the planner (Qwen3-VL-2B's deepstack mergers on "
            "the next GPU): from 5.18.0 generate encodes the images before the prefill "
            "(_prepare_multimodal_encoder_kwargs_for_generation), outside the root hook, and a split tower "
            "has no hook of its own, so its position-embedding weights are built from the CPU image_grid_thw "
            "and multiplied with pos_embed's output on the GPU. forward() passes."
        ),
        file="models/qwen3_vl/modeling_qwen3_vl.py",
        function="forward",
        code="pos_embeds = (self.pos_embed(interp_indices) * interp_weights[:, :, None]).sum(1)",
        fixed_in=None,  # open upstream (5.24.0, the newest, still fails)
        references=(f"{TRANSFORMERS}/blob/v5.18.0/src/transformers/generation/utils.py",),
        signature=ErrorSignature(op="mul", devices="gpu/cpu"),
        scenario="qwen3-vl-generate-split-vision",
        workaround=(
            "move the inputs to the model's execution device before generate (fix "
            "inputs_to_execution_device: inputs.to(model.device)), or run on one GPU (single_device)"
        ),
    ),
    KnownBug(
        id="qwen3_vl-fsdp2-offload-pos-embed-index",
        title="Qwen3-VL under FSDP2 CPU offload: the vision position index is built on the CPU",
        families=("qwen3_vl",),
        affected=">=4.57.0,<5.9.0",
        trigger=(
            "FSDP2 (fully_shard) with CPUOffloadPolicy and the vision tower's pos_embed (an nn.Embedding) an "
            "FSDP unit of its own, as verl's apply_fsdp2 wraps every nn.Embedding of a model with untied "
            "embeddings (Qwen3-VL-8B, 32B, 30B-A3B): fast_pos_embed_interpolate builds idx_tensor on "
            "self.pos_embed.weight.device, which before pos_embed's own forward is the offloaded shard's "
            "device, the CPU; FSDP2 then gathers the weight onto the rank's GPU for the call, and the "
            "embedding gets a CPU index. Without offload the shard is on the GPU and nothing fails."
        ),
        file="models/qwen3_vl/modeling_qwen3_vl.py",
        copies=("models/qwen3_vl_moe/modeling_qwen3_vl_moe.py",),  # 30B-A3B: verl, trl, torchtitan reports
        function="fast_pos_embed_interpolate",
        code="pos_embeds = self.pos_embed(idx_tensor) * weight_tensor[:, :, None]",
        variants=("pos_embeds = self.pos_embed(idx_tensor).to(device) * weight_tensor[:, :, None]",),
        # PR 41536 (5.0.0) moved pos_embed's output, not the index: 5.0-5.8 still fail. 5.9.0 builds the
        # indices on grid_thw's device (vision_utils.get_vision_bilinear_indices_and_weights).
        fixed_in="5.9.0",
        references=(
            f"{TRANSFORMERS}/pull/41536",
            f"{TRANSFORMERS}/blob/v5.9.0/src/transformers/vision_utils.py",
            "https://github.com/verl-project/verl/issues/4906",
            "https://github.com/huggingface/trl/issues/4771",
        ),
        signature=ErrorSignature(
            op="index_select", devices="gpu/cpu", wrapper="wrapper_CUDA__index_select", argument="index"
        ),
        scenario="qwen3-vl-fsdp2-offload",
        workaround=(
            "upgrade to transformers 5.9.0 (fix upgrade_transformers), or keep nn.Embedding modules in the "
            "root FSDP unit (wrap only the _no_split_modules classes, as "
            "accelerate's TRANSFORMER_BASED_WRAP does), or train without CPUOffloadPolicy, or patch "
            "fast_pos_embed_interpolate to build its indices on grid_thw.device (what 5.9.0 does)"
        ),
    ),
    *_host_inv_freq_bugs(
        "qwen3_vl", "Qwen3-VL", "4.57.0", "qwen3-vl-fsdp2-host-buffers", copies=("qwen3_vl_moe",)
    ),
    *_host_inv_freq_bugs("qwen3_5", "Qwen3.5", "5.2.0", "qwen3.5-fsdp2-host-buffers", moe=("qwen3_5_moe",)),
    *_host_inv_freq_bugs("qwen3_omni_moe", "Qwen3-Omni thinker", "4.57.0", "qwen3-omni-fsdp2-host-buffers"),
    KnownBug(
        id="qwen2_5_omni-rope-deltas-padding-delta",
        title="Qwen2.5-Omni thinker across GPUs: rope_deltas minus the padding delta, on two GPUs",
        families=("qwen2_5_omni",),
        affected=">=4.52.1,<4.53.0",
        trigger=(
            "image, video or audio input, forward or generate (the prefill), with embed_tokens on "
            "another GPU than the map's first (the root hook's, where input_ids go): forward moves "
            "attention_mask to the embeddings' GPU and takes delta0, the padding count, from it, then "
            "subtracts it from the rope_deltas that get_rope_index made on input_ids' GPU. The planner does "
            "it to the tiny thinker on 4 x 24 GiB (auto: the audio tower alone on GPU 1, the rest on GPU "
            "2); the 7B's plans keep the towers and embed_tokens on one GPU, so there a hand-written map "
            "that splits them does it."
        ),
        file="models/qwen2_5_omni/modeling_qwen2_5_omni.py",
        function="forward",
        code="rope_deltas = rope_deltas - delta0",
        fixed_in="4.53.0",
        references=(
            f"{TRANSFORMERS}/blob/v4.52.4/src/transformers/models/qwen2_5_omni/modeling_qwen2_5_omni.py",
            f"{TRANSFORMERS}/blob/v4.53.0/src/transformers/models/qwen2_5_omni/modeling_qwen2_5_omni.py",
        ),
        # Tensor.sub of get_rope_index's deltas (input_ids' GPU) and delta0 (the embeddings' GPU)
        signature=ErrorSignature(op="sub", devices="gpu/gpu"),
        scenario="qwen2.5-omni-audio-apart",
        workaround=OMNI_APART_WORKAROUND,
    ),
    _rope_deltas_bug(
        "qwen2_5_omni",
        "Qwen2.5-Omni thinker",
        ">=4.52.1,<4.53.0",
        "delta = cache_position[0] + self.rope_deltas if cache_position is not None else 0",
        "qwen2.5-omni-text-generate",
        trigger=(
            "generate() on a text-only prompt, with embed_tokens on another GPU than the map's first (the "
            "tiny thinker on 4 x 24 GiB, auto): forward moves attention_mask to the embeddings' GPU before "
            "get_rope_index, so a text-only prompt's rope_deltas are made there, and the first decode step "
            "adds them to cache_position, which accelerate's root hook put on the map's first GPU. The "
            "prefill passes; so does an audio prompt's prefill, which then fails here too."
        ),
        references=(
            f"{TRANSFORMERS}/blob/v4.52.4/src/transformers/models/qwen2_5_omni/modeling_qwen2_5_omni.py",
        ),
        workaround=OMNI_APART_WORKAROUND,
    ),
    KnownBug(
        id="qwen3_5-vision-split-pos-embeds-add",
        title="Qwen3.5 vision tower split after patch_embed: the position embeddings added on another GPU",
        families=("qwen3_5", "qwen3_5_moe"),
        affected=">=5.2.0,<5.9.0",
        trigger=VISION_SPLIT_TRIGGER
        + " 5.2.0-5.8.x interpolate on pos_embed's GPU and fail at the add; from 5.9.0 the interpolation "
        "weights are built on grid_thw's device and the multiplication a line earlier fails "
        "(qwen3_5-vision-split-pos-embed-weights).",
        file="models/qwen3_5/modeling_qwen3_5.py",
        copies=("models/qwen3_5_moe/modeling_qwen3_5_moe.py",),
        function="forward",
        code="hidden_states = hidden_states + pos_embeds",
        fixed_in="5.9.0",
        references=(f"{TRANSFORMERS}/blob/v5.8.1/src/transformers/models/qwen3_5/modeling_qwen3_5.py",),
        signature=ErrorSignature(op="add", devices="gpu/gpu"),
        scenario="qwen3.5-vision-split",
        workaround=VISION_SPLIT_WORKAROUND,
    ),
    KnownBug(
        id="qwen3_5-vision-split-pos-embed-weights",
        title="Qwen3.5 vision tower split after patch_embed: interpolation weights and pos_embed on two GPUs",
        families=("qwen3_5", "qwen3_5_moe", "qwen3_omni_moe"),
        affected=">=5.9.0",
        trigger=VISION_SPLIT_TRIGGER
        + " From 5.9.0 (vision_utils builds the bilinear indices and weights on grid_thw's device, the "
        "fix of the FSDP2 offload bug) the weights are on the root hook's GPU and pos_embed's output on "
        "its own: the multiplication fails (5.2.0-5.8.x failed a line later, "
        "qwen3_5-vision-split-pos-embeds-add). Qwen3-Omni's vision tower has the same line.",
        file="models/qwen3_5/modeling_qwen3_5.py",
        copies=(
            "models/qwen3_5_moe/modeling_qwen3_5_moe.py",
            "models/qwen3_omni_moe/modeling_qwen3_omni_moe.py",
        ),
        function="forward",
        code="pos_embeds = (self.pos_embed(interp_indices) * interp_weights[:, :, None]).sum(1)",
        variants=("pos_embeds = (self.pos_embed(bilinear_indices) * bilinear_weights[:, :, None]).sum(0)",),
        fixed_in=None,  # open upstream: 5.25.0 still fails
        references=(f"{TRANSFORMERS}/blob/v5.9.0/src/transformers/vision_utils.py",),
        signature=ErrorSignature(op="mul", devices="gpu/gpu"),
        scenario="qwen3.5-vision-split",
        workaround=VISION_SPLIT_WORKAROUND,
    ),
    KnownBug(
        id="qwen3_5-offload-decode-conv1d-weight",
        title="Qwen3.5 decode under CPU offload: the linear attention's conv1d weight read where "
        "accelerate never loaded it",
        families=("qwen3_5", "qwen3_5_moe"),
        affected=">=5.2.0,<5.13.0",
        trigger=(
            "generate() (the first decode step; the prefill passes) with a linear-attention layer "
            "offloaded to the CPU (from_pretrained maps layers to 'cpu' when the GPUs are full: "
            "Qwen3.5-27B on one 24 GiB GPU and the host's RAM): Qwen3_5GatedDeltaNet.forward hands "
            "self.conv1d.weight to causal_conv1d_update directly, so accelerate's hook on conv1d never "
            "runs and the weight is still the offload's meta placeholder. Without the causal-conv1d "
            "kernels (transformers' torch fallback) the convolution refuses it; with them the CUDA "
            "kernel reads the placeholder and the tokens are garbage, with no error (PR 46831). 5.13.0 "
            "runs the forward under force_accelerate_hooks('conv1d')."
        ),
        file="models/qwen3_5/modeling_qwen3_5.py",
        copies=("models/qwen3_5_moe/modeling_qwen3_5_moe.py",),
        function="torch_causal_conv1d_update",
        code="out = F.conv1d(hidden_states_new, weight.unsqueeze(1), bias, padding=0, groups=hidden_size)",
        fixed_in="5.13.0",
        references=(
            f"{TRANSFORMERS}/pull/46831",
            f"{TRANSFORMERS}/blob/v5.13.0/src/transformers/models/qwen3_5/modeling_qwen3_5.py",
        ),
        # ATen's convolution compares the input's and the weight's types first: CUDA against Meta
        signature=ErrorSignature(op="conv1d", devices="gpu/meta", argument="weight"),
        scenario="qwen3.5-offload-decode",
        workaround=(
            "upgrade to 5.13.0 or later (fix upgrade_transformers), or give the model room on the GPUs so "
            "that no linear-attention layer is offloaded (more or larger GPUs, a quantized checkpoint)"
        ),
    ),
    _inputs_on_cpu_bug("qwen2_vl", "Qwen2-VL", "4.45.0", "qwen2-vl-inputs-on-cpu"),
    _inputs_on_cpu_bug("qwen2_5_vl", "Qwen2.5-VL", "4.49.0", "inputs-on-cpu"),
    _inputs_on_cpu_bug("qwen3_vl", "Qwen3-VL", "4.57.0", "qwen3-vl-inputs-on-cpu", copies=("qwen3_vl_moe",)),
    _inputs_on_cpu_bug("qwen3_5", "Qwen3.5", "5.2.0", "qwen3.5-inputs-on-cpu", moe=("qwen3_5_moe",)),
    _inputs_on_cpu_bug(
        "qwen2_5_omni", "Qwen2.5-Omni thinker", "4.52.1", "qwen2.5-omni-inputs-on-cpu", codes=OMNI_EMBED_CODES
    ),
    _inputs_on_cpu_bug(
        "qwen3_omni_moe", "Qwen3-Omni thinker", "4.57.0", "qwen3-omni-inputs-on-cpu", codes=OMNI_EMBED_CODES
    ),
    _pixels_on_cpu_bug("qwen2_vl", "Qwen2-VL", "qwen2-vl-pixel-values-on-cpu"),
    _pixels_on_cpu_bug("qwen2_5_vl", "Qwen2.5-VL", "pixel-values-on-cpu"),
    _pixels_on_cpu_bug("qwen3_vl", "Qwen3-VL", "qwen3-vl-pixel-values-on-cpu", copies=("qwen3_vl_moe",)),
    _pixels_on_cpu_bug("qwen3_5", "Qwen3.5", "qwen3.5-pixel-values-on-cpu", moe=("qwen3_5_moe",)),
    _pixels_on_cpu_bug("qwen2_5_omni", "Qwen2.5-Omni thinker", "qwen2.5-omni-pixel-values-on-cpu"),
    _pixels_on_cpu_bug("qwen3_omni_moe", "Qwen3-Omni thinker", "qwen3-omni-pixel-values-on-cpu"),
    KnownBug(
        id="qwen2_5_vl-video-fps-temporal-ids",
        title="Qwen2.5-VL video above 2 fps: get_rope_index truncates the seconds per frame step to 0",
        families=("qwen2_5_vl",),
        affected=">=4.52.1,<5.18.0",
        trigger=(
            "video sampled above 2 fps (second_per_grid_ts = temporal_patch_size / fps below 1; qwen-vl-"
            "utils' 4-frame minimum does it to short clips): get_rope_index casts second_per_grid_t to an "
            "integer (4.52.1-5.2: torch.as_tensor(..., dtype=int64); 5.3-5.17: int(...)), so 0.5 s becomes "
            "0 and every frame gets the same temporal position. Nothing raises; the positions are wrong."
        ),
        file="models/qwen2_5_vl/modeling_qwen2_5_vl.py",
        function="get_rope_index",
        code="second_per_grid_t = torch.as_tensor(",
        variants=("time_interval = tokens_per_second * int(next(second_per_grid_ts))",),
        fixed_in="5.18.0",
        references=(f"{TRANSFORMERS}/pull/48669",),
        signature=None,
        scenario="video-fps4",
        workaround=(
            "sample the video at 2 fps or less (fps=2.0 to qwen-vl-utils and the processor), or upgrade "
            "(upgrade_transformers, checked in the version lab); no kit fix corrects the positions in place"
        ),
        kind="silent",
    ),
)


def _version(version: str | Version | None) -> Version:
    if version is None:
        return TRANSFORMERS_VERSION
    if isinstance(version, Version):
        return version
    try:
        return Version(str(version))
    except InvalidVersion as error:
        raise InvalidArgumentError(
            f"{version!r} is not a version string; pass a transformers release such as '4.51.3'."
        ) from error


def known_bugs() -> pd.DataFrame:
    """The catalogue as a DataFrame with the columns `KNOWN_BUG_COLUMNS`, one row per entry.

    >>> qd.known_bugs()[["id", "affected", "fixed_in"]]
    """
    import pandas as pd

    return pd.DataFrame([bug.row() for bug in CATALOGUE], columns=KNOWN_BUG_COLUMNS, dtype=object)


def get_bug(bug_id: str) -> KnownBug:
    """The catalogue entry called `bug_id`."""
    for bug in CATALOGUE:
        if bug.id == bug_id:
            return bug
    raise InvalidArgumentError(
        f"No known bug {bug_id!r}; the catalogue holds {', '.join(b.id for b in CATALOGUE)}."
    )


def same_file(path: str, file: str) -> bool:
    """Whether `path` (any machine's, "/" or "\\" separated) is `file`, a path inside transformers."""
    path = path.replace("\\", "/")
    return path == file or path.endswith("/" + file)


def squeeze(text: str) -> str:
    """`text` with each run of whitespace made one space: code compared whatever its layout."""
    return " ".join(text.split())


def match_known_bugs(
    file: str,
    function: str,
    code: str,
    transformers_version: str | None = None,
    *,
    include_unaffected: bool = False,
) -> list[dict]:
    """The catalogue entries a failure location is an instance of, as `known_bugs()` rows plus
    `version` (the release checked) and `version_affected`.

    A location matches an entry when `file` ends with the entry's path inside transformers
    (".../transformers/models/qwen2_5_vl/modeling_qwen2_5_vl.py"), `function` is its function (a
    qualified "Class.function" counts) and `code`, the source line that raised, contains the entry's
    code (whitespace-insensitive). `transformers_version` defaults to the installed release.

    A location match on a release outside the entry's affected range is *not* a known bug of that
    release (the same line can raise for another reason): it is left out, unless
    `include_unaffected=True`, which returns it with `version_affected` False.
    """
    for name, value in (("file", file), ("function", function), ("code", code)):
        if not isinstance(value, str):
            raise InvalidArgumentError(f"{name} must be a string; got {type(value).__name__}.")
    version = _version(transformers_version)
    matches = []
    for bug in CATALOGUE:
        if bug.kind == "silent":  # it raises nothing: a failure's location is never one
            continue
        located = bug.in_file(file) and function.rsplit(".", 1)[-1] == bug.function and bug.quoted_in(code)
        if not located:
            continue
        affected = bug.affects(version)
        if affected or include_unaffected:
            matches.append({**bug.row(), "version": str(version), "version_affected": affected})
    return matches


def transformers_root() -> Path:
    """The installed transformers package directory."""
    import transformers

    return Path(transformers.__file__).parent


def find_in_source(bug: KnownBug | str, root: Path | None = None) -> tuple[Path, int] | None:
    """Where the bug's code line sits in a transformers source tree (default: the installed one):
    (file, line number) of the first line inside a function named `bug.function` that contains
    one of `bug.codes`, or None when the file, the function or the line is absent (a fixed release)."""
    bug = get_bug(bug) if isinstance(bug, str) else bug
    if not isinstance(bug, KnownBug):
        raise InvalidArgumentError(f"Expected a KnownBug or a bug id; got {type(bug).__name__}.")
    path = (root or transformers_root()) / bug.file
    if not path.is_file():
        return None
    source = path.read_text()
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == bug.function:
            for number in range(node.lineno, node.end_lineno + 1):
                if bug.quoted_in(lines[number - 1]):
                    return path, number
    return None

"""The named scenarios (`Scenario.preset(name)`, `doctor --preset`, the catalogue's reproductions) as
plain data: importable without torch, so that `explain` and the CLI's help can name them."""

# an FSDP2 trainer with CPU offload that keeps the non-persistent buffers (the rotary inv_freq) on the
# host, as SkyRL and VeOmni do, two ranks, a text-only forward: the text rotary runs first
_HOST_BUFFERS = {
    "gpus": 2,
    "inputs": "text",
    "action": "forward",
    "engine": "fsdp2",
    "cpu_offload": True,
    "host_buffers": True,
}
# the tiny Qwen2.5-Omni thinker on 4 x 24 GiB, auto: the audio tower alone on GPU 1 (the map's first),
# the vision tower, embed_tokens and the decoder on GPU 2
_OMNI_APART = {"model": "tiny/qwen2_5_omni", "gpus": 4, "memory": "24GiB", "strategy": "auto"}

PRESETS = {
    # 7B on 8 x 24 GiB, balanced: the vision tower on GPU 0, embed_tokens on GPU 1; a padded batch, generate.
    "seed-batched": {
        "model": "Qwen/Qwen2.5-VL-7B-Instruct",
        "gpus": 8,
        "memory": "24GiB",
        "strategy": "balanced",
        "inputs": "batch",
        "action": "generate",
    },
    # A video whose second_per_grid_ts is a tensor, on two GPUs (the root hook moves it to GPU 0).
    "seed-video": {
        "model": "Qwen/Qwen2.5-VL-7B-Instruct",
        "gpus": 2,
        "memory": "24GiB",
        "strategy": "auto",
        "inputs": "video",
        "second_per_grid_ts": "tensor",
        "action": "forward",
    },
    # A text-only prompt, generate, in the seed's layout: rope_deltas on GPU 1, cache_position on GPU 0.
    "text-generate": {
        "model": "Qwen/Qwen2.5-VL-7B-Instruct",
        "gpus": 8,
        "memory": "24GiB",
        "strategy": "balanced",
        "inputs": "text",
        "action": "generate",
    },
    # Qwen2-VL-7B on 8 x 24 GiB, balanced: the vision tower on GPU 0, embed_tokens on GPU 1.
    "qwen2-vl-image-apart": {
        "model": "Qwen/Qwen2-VL-7B-Instruct",
        "gpus": 8,
        "memory": "24GiB",
        "strategy": "balanced",
        "inputs": "image",
        "action": "forward",
    },
    "qwen2-vl-batched": {
        "model": "Qwen/Qwen2-VL-7B-Instruct",
        "gpus": 8,
        "memory": "24GiB",
        "strategy": "balanced",
        "inputs": "batch",
        "action": "generate",
    },
    "qwen2-vl-text-generate": {
        "model": "Qwen/Qwen2-VL-7B-Instruct",
        "gpus": 8,
        "memory": "24GiB",
        "strategy": "balanced",
        "inputs": "text",
        "action": "generate",
    },
    # One GPU, no hooks, the processor's inputs left on the CPU.
    "inputs-on-cpu": {
        "model": "Qwen/Qwen2.5-VL-7B-Instruct",
        "gpus": 1,
        "inputs": "image",
        "action": "forward",
    },
    "qwen2-vl-inputs-on-cpu": {
        "model": "Qwen/Qwen2-VL-2B-Instruct",
        "gpus": 1,
        "inputs": "image",
        "action": "forward",
    },
    "qwen3-vl-inputs-on-cpu": {
        "model": "Qwen/Qwen3-VL-8B-Instruct",
        "gpus": 1,
        "inputs": "image",
        "action": "forward",
    },
    # The same with generate: from 5.18 the images are encoded first, with the CPU pixel_values.
    "pixel-values-on-cpu": {
        "model": "Qwen/Qwen2.5-VL-7B-Instruct",
        "gpus": 1,
        "inputs": "image",
        "action": "generate",
    },
    "qwen2-vl-pixel-values-on-cpu": {
        "model": "Qwen/Qwen2-VL-2B-Instruct",
        "gpus": 1,
        "inputs": "image",
        "action": "generate",
    },
    "qwen3-vl-pixel-values-on-cpu": {
        "model": "Qwen/Qwen3-VL-8B-Instruct",
        "gpus": 1,
        "inputs": "image",
        "action": "generate",
    },
    # Qwen3-VL-2B on 8 x 24 GiB, balanced: the planner splits the vision tower (deepstack mergers on GPU 1).
    "qwen3-vl-generate-split-vision": {
        "model": "Qwen/Qwen3-VL-2B-Instruct",
        "gpus": 8,
        "memory": "24GiB",
        "strategy": "balanced",
        "inputs": "image",
        "action": "generate",
    },
    # Qwen3-VL-8B (untied embeddings) trained with FSDP2 and CPU offload, two ranks, the verl wrap.
    "qwen3-vl-fsdp2-offload": {
        "model": "Qwen/Qwen3-VL-8B-Instruct",
        "gpus": 2,
        "inputs": "image",
        "action": "forward",
        "engine": "fsdp2",
        "cpu_offload": True,
    },
    # The same trainer keeping the buffers on the host: Qwen3-VL-8B, Qwen3.5-27B, Qwen3-Omni's thinker.
    "qwen3-vl-fsdp2-host-buffers": {"model": "Qwen/Qwen3-VL-8B-Instruct", **_HOST_BUFFERS},
    "qwen3.5-fsdp2-host-buffers": {"model": "Qwen/Qwen3.5-27B", **_HOST_BUFFERS},
    "qwen3-omni-fsdp2-host-buffers": {"model": "Qwen/Qwen3-Omni-30B-A3B-Instruct", **_HOST_BUFFERS},
    # Qwen3.5-0.8B with the vision tower split after patch_embed (an explicit map), inputs moved as the
    # model card does: the interpolated position embeddings and the patches on two GPUs.
    "qwen3.5-vision-split": {
        "model": "Qwen/Qwen3.5-0.8B",
        "gpus": 2,
        "strategy": {
            "model.visual.patch_embed": 0,
            "model.visual.pos_embed": 1,
            "model.visual.rotary_pos_emb": 1,
            "model.visual.blocks": 1,
            "model.visual.merger": 1,
            "model.language_model": 1,
            "lm_head": 1,
        },
        "inputs": "image",
        "inputs_on": "model",
        "action": "forward",
    },
    # Qwen3.5-27B on one 24 GiB GPU and a GPU server's RAM: most layers offloaded, text generate.
    "qwen3.5-offload-decode": {
        "model": "Qwen/Qwen3.5-27B",
        "gpus": 1,
        "memory": "24GiB",
        "cpu_memory": "1024GiB",
        "inputs": "text",
        "inputs_on": "model",
        "action": "generate",
    },
    # The Omni thinker's audio tower apart from embed_tokens: an image forward, a text-only generate.
    "qwen2.5-omni-audio-apart": {**_OMNI_APART, "inputs": "image", "action": "forward"},
    "qwen2.5-omni-text-generate": {**_OMNI_APART, "inputs": "text", "action": "generate"},
    # The new families on one GPU with the processor's inputs left on the CPU (forward, then generate).
    "qwen3.5-inputs-on-cpu": {
        "model": "Qwen/Qwen3.5-0.8B",
        "gpus": 1,
        "inputs": "image",
        "action": "forward",
    },
    "qwen2.5-omni-inputs-on-cpu": {
        "model": "Qwen/Qwen2.5-Omni-7B",
        "gpus": 1,
        "memory": "80GiB",
        "inputs": "image",
        "action": "forward",
    },
    "qwen3-omni-inputs-on-cpu": {
        "model": "Qwen/Qwen3-Omni-30B-A3B-Instruct",
        "gpus": 1,
        "memory": "80GiB",
        "inputs": "image",
        "action": "forward",
    },
    "qwen3.5-pixel-values-on-cpu": {
        "model": "Qwen/Qwen3.5-0.8B",
        "gpus": 1,
        "inputs": "image",
        "action": "generate",
    },
    "qwen2.5-omni-pixel-values-on-cpu": {
        "model": "Qwen/Qwen2.5-Omni-7B",
        "gpus": 1,
        "memory": "80GiB",
        "inputs": "image",
        "action": "generate",
    },
    "qwen3-omni-pixel-values-on-cpu": {
        "model": "Qwen/Qwen3-Omni-30B-A3B-Instruct",
        "gpus": 1,
        "memory": "80GiB",
        "inputs": "image",
        "action": "generate",
    },
    # A video sampled at 4 fps (second_per_grid_ts 0.5) across two GPUs: no error; the temporal ids to check.
    "video-fps4": {
        "model": "Qwen/Qwen2.5-VL-7B-Instruct",
        "gpus": 2,
        "memory": "24GiB",
        "strategy": "balanced",
        "inputs": "video",
        "fps": 4.0,
        "action": "forward",
    },
}

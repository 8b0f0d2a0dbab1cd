"""The named scenarios (`Scenario.preset(name)`, `doctor --preset`, the catalogue's reproductions) as
plain data: importable without torch, so that `explain` and the CLI's help can name them."""

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
    # The same trainer keeping the rotary inv_freq on the host (SkyRL, VeOmni), text only: the text rotary.
    "qwen3-vl-fsdp2-host-buffers": {
        "model": "Qwen/Qwen3-VL-8B-Instruct",
        "gpus": 2,
        "inputs": "text",
        "action": "forward",
        "engine": "fsdp2",
        "cpu_offload": True,
        "host_buffers": True,
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

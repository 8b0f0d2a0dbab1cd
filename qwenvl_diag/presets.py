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
}

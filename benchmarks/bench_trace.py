"""Traced forward / plain forward on plain CPU (no simulation), for a ~30M-parameter model, in one run.

The model is a Llama-architecture causal LM built from a config (random weights, offline); the
input is a batch of 2 x 128 tokens. Goal: <= 1.15x for the default trace.

Run: .venv/bin/python benchmarks/bench_trace.py
"""

from __future__ import annotations

import statistics
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from qwenvl_diag.trace import tracing

REPEATS = 15


def _model() -> torch.nn.Module:
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=384,
        intermediate_size=1024,
        num_hidden_layers=8,
        num_attention_heads=6,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def main() -> None:
    model = _model()
    params = sum(p.numel() for p in model.parameters())
    inputs = {"input_ids": torch.randint(0, 32000, (2, 128))}

    def plain():
        model(**inputs)

    def traced():
        with tracing(model):
            model(**inputs)

    times = {"plain": [], "traced": []}
    with torch.no_grad():
        plain(), traced()
        for _ in range(REPEATS):
            for name, run in (("plain", plain), ("traced", traced)):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}
    versions = f"transformers {transformers.__version__}, torch {torch.__version__}"
    print(f"{versions}, {torch.get_num_threads()} threads")
    print(
        f"model: {params / 1e6:.1f}M parameters, input 2 x 128 tokens, median of {REPEATS} interleaved runs"
    )
    print(f"plain forward  {median['plain'] * 1000:8.1f} ms")
    print(
        f"traced forward {median['traced'] * 1000:8.1f} ms   ratio {median['traced'] / median['plain']:.3f}x"
    )


if __name__ == "__main__":
    main()

"""Random-weight Llamas of real shapes, for TTFT studies where weights do not matter.

`model="random:llama-8b"` is Llama-3.1-8B's shape (7.4 B parameters with the default model's
vocabulary), `random:llama-1b` a 1B-class shape. They take the default model's tokenizer and
chat template (so `streamrag models prepare` must have run) and are built once into the cache,
on the GPU when there is one (an 8B build is ~30 s there, and 15 GB of bf16 on disk).
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import ModelNotFoundError

SHAPES = {
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8),
    "llama-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8),
}
PREFIX = "random:"
CONTEXT = 131_072  # Llama-3.1's: the paper's token counts fit without a cap


def shape_of(name: str) -> str:
    shape = name.removeprefix(PREFIX)
    if shape not in SHAPES:
        raise ModelNotFoundError(f"model={name!r}: unknown shape; use one of "
                                 + ", ".join(PREFIX + s for s in SHAPES))
    return shape


def build_random_model(name: str, tokenizer_dir: Path, target: Path) -> None:
    """Write the random model `name` into the empty folder `target`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=CONTEXT, rms_norm_eps=1e-5,
                         rope_theta=500_000.0, tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, **SHAPES[shape_of(name)])
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.model_max_length = CONTEXT
    tokenizer.save_pretrained(target, save_jinja_files=False)

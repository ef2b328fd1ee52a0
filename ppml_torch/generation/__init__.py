"""GPT-2 text generation in a session (plaintext or MPC): ``ppml_torch.generate(...)``.

``ppml_torch.generate(module, prompt_ids, max_new_tokens, session="spu:ABY3", route="graph")``
runs greedy decoding with a fixed-length KV cache: weights put once by alice, prompt by
bob, the loop secret, the ids revealed to bob at the end (see :mod:`.decode`).  The package is
named ``generation`` so that ``ppml_torch.generate`` stays the function.  Docs:
docs/generation.md.
"""

from __future__ import annotations

from .checkpoint import (
    GenerationError,
    as_nanogpt,
    check_tokenizer,
    gpt2_tokenizer,
    load_candidates,
    load_checkpoint,
    random_gpt2,
)
from .decode import Decoder, Generation, generate, torch_greedy

__all__ = [
    "Decoder",
    "Generation",
    "GenerationError",
    "as_nanogpt",
    "check_tokenizer",
    "generate",
    "gpt2_tokenizer",
    "load_candidates",
    "load_checkpoint",
    "random_gpt2",
    "torch_greedy",
]

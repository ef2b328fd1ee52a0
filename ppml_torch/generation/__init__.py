"""GPT-2 text generation in a session (plaintext or MPC): ``ppml_torch.generate(...)``.

``ppml_torch.generate(module, prompt_ids, max_new_tokens, session="spu:ABY3", route="graph")``
runs greedy decoding with a fixed-length KV cache: weights put once by their owner (the
session's first party, alice), prompt by the second (bob), the loop secret, the ids revealed
to the prompt's owner at the end (see :mod:`.decode`).  The package is
named ``generation`` so that ``ppml_torch.generate`` stays the function.  Files:
:mod:`.decode` (``generate``, ``torch_greedy``), :mod:`.decoder` (the cached decoder),
:mod:`.checks` (the input checks), :mod:`.programs` (the step programs), :mod:`.ops` (the MPC
argmaxes), :mod:`.checkpoint` (checkpoints, candidates, the tokenizer).  Docs:
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
from .decode import generate, torch_greedy
from .decoder import Decoder, Generation

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

"""What to generate: the model (a checkpoint or a seeded random GPT-2), the prompt, the
number of tokens, the routes; built and checked before any session starts."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

DEFAULT_PROMPT = "I enjoy walking with my cute dog"
RANDOM_SHAPE = {"layers": 2, "width": 64, "heads": 4}
DEFAULT_INIT_STD = 0.02  # GPT-2's initializer_range
# built by `make tiny-gpt2` (examples/train_tiny_gpt2.py); used when present and no shape given
TRAINED = Path(__file__).resolve().parents[3] / "models" / "tiny-gpt2"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A local checkpoint, or the shape and seed of a random GPT-2 (``None``: the default)."""

    checkpoint: str | None = None
    layers: int | None = None
    width: int | None = None
    heads: int | None = None
    init_std: float | None = None
    seed: int = 0

    def resolved(self) -> ModelSpec:
        """``models/tiny-gpt2`` when it is built and neither a checkpoint nor a shape is given;
        one-line error when a checkpoint and a random model's shape are both given."""
        from ...generation import GenerationError

        given = [f"--{k}" for k in RANDOM_SHAPE if getattr(self, k) is not None]
        if self.init_std is not None:
            given.append("--init-std")
        if not self.checkpoint and not given and (TRAINED / "config.json").is_file():
            return dataclasses.replace(self, checkpoint=str(TRAINED))
        if self.checkpoint and given:
            raise GenerationError(
                f"{', '.join(given)} set the random model's shape; a --checkpoint has its own"
            )
        return self


@dataclasses.dataclass(frozen=True)
class Job:
    """One ``ppml-torch gpt2``: a model, a prompt, ``tokens`` new tokens on ``routes``."""

    model: ModelSpec
    prompt: str = DEFAULT_PROMPT
    tokens: int = 10
    routes: tuple[str, ...] = ("graph",)
    approx: bool = False

    def check_tokens(self) -> None:
        from ...generation import GenerationError

        if self.tokens < 1:
            raise GenerationError(f"--tokens must be at least 1, got {self.tokens}")

    def check_prompt(self) -> None:
        from ...generation import GenerationError

        if not self.prompt:
            raise GenerationError("--prompt is empty; give some text")


@dataclasses.dataclass(frozen=True)
class Built:
    """The model (``weights=False``: a checkpoint's architecture only), its tokenizer (or
    ``None``) and one line describing it."""

    model: Any
    tokenizer: Any
    what: str


def build(
    spec: ModelSpec, *, weights: bool = True, tokenizer: bool = True, weights_owner: str = ""
) -> Built:
    """The model of a resolved ``spec``.  ``weights=False``: a checkpoint's weights are not
    read (they are ``weights_owner``'s); ``tokenizer=False``: no tokenizer."""
    from ...generation import check_tokenizer, gpt2_tokenizer, load_checkpoint, random_gpt2

    if spec.checkpoint:
        model = load_checkpoint(spec.checkpoint, weights=weights)
        tok = gpt2_tokenizer(spec.checkpoint) if tokenizer else None
        c = model.config
        what = (
            f"checkpoint {spec.checkpoint} ({c.n_layer} layers, {c.n_embd} wide, "
            f"{c.n_head} heads, vocabulary {c.vocab_size})"
        )
        if not weights:
            what += f": its architecture only (config.json), the weights are {weights_owner}'s"
    else:
        shape = {k: getattr(spec, k) or v for k, v in RANDOM_SHAPE.items()}
        std = DEFAULT_INIT_STD if spec.init_std is None else spec.init_std
        model = random_gpt2(**shape, seed=spec.seed, init_std=std)
        tok = gpt2_tokenizer() if tokenizer else None
        what = (
            f"seeded random GPT-2 (seed {spec.seed}, init std {std}; {shape['layers']} layers, "
            f"{shape['width']} wide, {shape['heads']} heads, GPT-2's vocabulary of "
            f"{model.config.vocab_size}): random weights, so the text is not meant to read"
        )
    if tok is not None:
        check_tokenizer(tok, model.config.vocab_size)
    return Built(model, tok, what)


def candidates(spec: ModelSpec, approx: bool) -> Any:
    """``approx`` with a checkpoint that declares its tokens: their ids, else ``None``."""
    from ...generation import load_candidates

    return load_candidates(spec.checkpoint) if approx and spec.checkpoint else None


def public_settings(job: Job, model: Any, cand: Any) -> dict[str, str]:
    """What every party must run alike (the program's shapes and steps); all public."""
    import hashlib

    import numpy as np

    c = model.config
    arch = (
        f"{c.n_layer} layers, {c.n_embd} wide, {c.n_head} heads, vocabulary {c.vocab_size}, "
        f"{c.n_positions} positions"
    )
    among = "all"
    if cand is not None:
        digest = hashlib.sha256(np.asarray(cand, np.int32).tobytes()).hexdigest()[:12]
        among = f"{len(cand)} (sha256 {digest})"
    return {
        "model": arch,
        "--tokens": str(job.tokens),
        "--route": " ".join(job.routes),
        "--approx": str(bool(job.approx)),
        "candidate tokens": among,
    }

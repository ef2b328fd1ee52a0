"""The two built-in programs of ``ppml-torch profile``: the homework's training step and one
GPT-2 decode step, as a :class:`Program` (a JAX function, its inputs and their owners) that
:func:`profile_program` profiles per module with :func:`ppml_torch.profiling.profile_call`
(``bench/bench_network.py`` runs the same programs between processes).

* :func:`homework_step` -- one SGD step of the breast-cancer homework (``ppml-torch
  homework-mlp``): the MLP [30, 15, 8, 1] (ReLU) forward and backward on a batch of 10,
  the homework's loss ``mean((y - p)**2 / 2)`` (row ``(loss)``) and the SGD update (row
  ``(optimizer)``).  alice holds features 0-14 and the weights, bob features 15-29 and the
  labels, as in the homework; joining the two feature blocks is row ``(join features)``.
* :func:`gpt2_decode_step` -- what ``ppml_torch.generate`` runs per new token: a seeded random
  GPT-2 (GPT-2's vocabulary) reading one token at a public position with a secret KV cache,
  then the greedy argmax over the vocabulary (``generation.ops.tree_argmax``, row
  ``(argmax)``); weights alice's, token and cache bob's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

HOMEWORK_BATCH = 10
HOMEWORK_LR = 0.01
PUBLIC = "public"


@dataclasses.dataclass(frozen=True)
class Program:
    """A function and its inputs: ``owners[i]`` is the index of the party putting
    ``inputs[i]`` (0: alice, 1: bob) or ``"public"``."""

    fn: Callable[..., Any]
    inputs: tuple[Any, ...]
    owners: tuple[int | str, ...]
    source: str
    route: str
    root_kind: str
    module_kinds: dict[str, str]


def profile_program(session: Any, program: Program, *, repeats: int = 1) -> Any:
    """Put ``program``'s inputs with their owners, profile one call, free everything."""
    from ..profiling import profile_call

    handles = []
    try:
        for value, owner in zip(program.inputs, program.owners, strict=True):
            who = owner if owner == PUBLIC else session.parties[int(owner)]
            handles.append(session.put(value, owner=who))
        out, report = profile_call(
            session,
            program.fn,
            *handles,
            repeats=repeats,
            source=program.source,
            route=program.route,
            root_kind=program.root_kind,
            module_kinds=program.module_kinds,
        )
        session.free(out)
    finally:
        for h in handles:
            session.free(h)
    return report


def homework_module(seed: int = 0) -> tuple[Any, str]:
    """The homework MLP with its initial weights (torch, seeded)."""
    from .calibration_presets import homework_mlp

    module, _, _ = homework_mlp(seed=seed, epochs=0)
    return module, f"homework MLP [30, 15, 8, 1] ReLU (seed {seed})"


def homework_step(*, route: str = "graph", seed: int = 0) -> Program:
    """One SGD step of the homework: ``(new params, loss)``."""
    import jax
    import jax.numpy as jnp
    import torch

    from ..converters.flax import to_flax
    from ..converters.fx import convert
    from ..profiling import model_scope, part_scope
    from .homework.data import load_data

    module, desc = homework_module(seed)
    data = load_data()
    x = np.asarray(data.x_train[:HOMEWORK_BATCH], np.float32)
    y = np.asarray(data.y_train[:HOMEWORK_BATCH], np.float32).reshape(-1, 1)
    cm = to_flax(module) if route == "flax" else convert(module, (torch.as_tensor(x),))

    def sgd_step(params, x_alice, x_bob, y):
        with part_scope("join features"):
            xb = jnp.concatenate([x_alice, x_bob], axis=1)

        def loss(p):
            with model_scope():
                pred = cm.apply(p, xb)
            with part_scope("loss"):
                return jnp.mean((y - pred) ** 2 / 2)

        value, grads = jax.value_and_grad(loss)(params)
        with part_scope("optimizer"):
            new = jax.tree_util.tree_map(lambda w, g: w - HOMEWORK_LR * g, params, grads)
        return new, value

    return Program(
        sgd_step,
        (cm.params, x[:, :15], x[:, 15:], y),
        (0, 0, 1, 1),
        f"{desc}: one SGD step (batch {HOMEWORK_BATCH}, lr {HOMEWORK_LR})",
        cm.route,
        type(module).__name__,
        {n: type(m).__name__ for n, m in module.named_modules()},
    )


def gpt2_module(layers: int = 2, width: int = 64, heads: int = 4, seed: int = 0) -> tuple[Any, str]:
    """The seeded random GPT-2 of ``ppml-torch gpt2`` (GPT-2's vocabulary), as nanoGPT."""
    from ..generation import as_nanogpt, random_gpt2

    gpt = as_nanogpt(random_gpt2(layers, width, heads, seed=seed))
    desc = (
        f"seeded random GPT-2 ({layers} layers, {width} wide, {heads} heads, vocabulary "
        f"{gpt.config.vocab_size}, seed {seed})"
    )
    return gpt, desc


def gpt2_decode_step(gpt: Any, desc: str, *, route: str = "graph", prompt_len: int = 7) -> Program:
    """One cached decode step (the token after a ``prompt_len``-token prompt) and the greedy
    argmax of its logits: ``(token, k_cache, v_cache)``."""
    from ..generation.ops import tree_argmax
    from ..generation.programs import build
    from ..profiling import model_scope, part_scope

    progs = build(gpt, route, 1, prompt_len, prompt_len + 2)

    def decode_step(params, idx, k_cache, v_cache, pos):
        with model_scope():
            logits, k_cache, v_cache = progs.decode(params, idx, k_cache, v_cache, pos)
        with part_scope("argmax"):
            token = tree_argmax(logits)
        return token, k_cache, v_cache

    rng = np.random.default_rng(0)
    cache = [rng.normal(0, 1, progs.cache_shape).astype(np.float32) for _ in range(2)]
    return Program(
        decode_step,
        (progs.params, np.array([[1]], np.int32), cache[0], cache[1], np.int32(prompt_len)),
        (0, 1, 1, 1, PUBLIC),  # the cache is the prompt step's output: secret (here bob's)
        f"{desc}: one decode step at position {prompt_len} and its argmax",
        route,
        type(gpt).__name__,
        {n: type(m).__name__ for n, m in gpt.named_modules()},
    )

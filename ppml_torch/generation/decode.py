"""``generate``: greedy generation in a session, weights shared once, cache and loop secret.

Who holds what (the session's roles by default, :func:`ppml_torch.runners.roles.roles`: its
first party holds the weights, its second the prompt; ABY3: alice, bob, carol; any session
works, ``cpu`` included):

* alice puts the weights once per generation (one ``put``); bob puts the prompt once.
* The prompt step and every decode step run inside the session; their output, the state
  ``(ids (B, N), k_cache, v_cache)``, stays secret from step to step.  Each step takes the
  greedy token (an argmax over the vocabulary, under MPC) and writes it into ``ids`` at a
  public slot; the next step reads its input token from there.  No id is revealed during
  the loop: bob gets all ``N`` ids in one reveal at the end.
* Public (every party knows it): the model's shapes, the prompt length ``T``, the number of
  new tokens ``N``, and each step's cache position (put as a public value), i.e. nothing
  more than the program being run.  alice and carol learn nothing of the prompt or the
  output; bob learns the output ids (and what they imply about the weights).

The loop has a fixed length: it does not stop at an end-of-text token (stopping would
reveal where it is); trim the ids afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ppml_torch.generation.checkpoint import (
    GenerationError,
    as_nanogpt,
    positions_of,
    vocab_size_of,
)
from ppml_torch.generation.checks import (
    check_candidates,
    check_lengths,
    check_options,
    check_prompt,
)
from ppml_torch.generation.decoder import Decoder, Generation
from ppml_torch.runners.placeholders import is_placeholder
from ppml_torch.runners.plan import session_plan
from ppml_torch.runners.roles import roles

if TYPE_CHECKING:
    import torch.nn as nn

    from ppml_torch.runners import Session


def _prompt_of(session: Session, prompt_ids: Any, owner: str, vocab: int) -> Any:
    """One process per party: the owner checks its prompt and announces its shape (public
    metadata: the program's shapes are public anyway); every process gets the owner's ids or
    a placeholder of their shape.  A bad prompt is the same one-line error in every process."""
    import jax

    mine, meta = None, None
    if owner in session.local_parties:
        try:
            value = prompt_ids() if callable(prompt_ids) else prompt_ids
            if is_placeholder(value):
                raise GenerationError(
                    f"the prompt is {owner}'s: give the ids in its own process, not a "
                    "shape-only placeholder"
                )
            mine = check_prompt(value, vocab)
            meta = {"shape": tuple(int(d) for d in mine.shape)}
        except GenerationError as e:
            meta = {"error": str(e)}
    every = session.announce(lambda p: meta if p == owner else None)
    got = every[owner]
    if "error" in got:
        raise GenerationError(got["error"])
    shape = tuple(got["shape"])
    if mine is not None:
        return mine
    if is_placeholder(prompt_ids):
        declared = tuple(prompt_ids.shape)
        declared = (1, *declared) if len(declared) == 1 else declared
        if declared != shape:
            raise GenerationError(
                f"this process describes {owner}'s prompt as {list(declared)} but {owner} holds "
                f"{list(shape)} token ids; describe it exactly (or pass None)"
            )
    return jax.ShapeDtypeStruct(shape, np.int32)


def generate(
    module: nn.Module,
    prompt_ids: Any,
    max_new_tokens: int,
    *,
    session: Any = "cpu",
    route: str = "graph",
    max_len: int | None = None,
    weights_owner: str | None = None,
    prompt_owner: str | None = None,
    approx: bool = False,
    argmax: str = "tree",
    candidates: Sequence[int] | np.ndarray | None = None,
    calibration: Any = None,
) -> Generation:
    """Greedy generation of ``max_new_tokens`` ids after ``prompt_ids`` in a session.

    ``module``: a HF ``GPT2LMHeadModel`` (e.g. :func:`load_checkpoint`) or a nanoGPT ``GPT``;
    its weights run in the project's nanoGPT with a KV cache (``route="graph"``: converted by
    ``ppml_torch.convert``; ``"flax"``: the Flax twin).  ``prompt_ids``: ``(T,)`` or ``(B, T)``.
    ``session``: an open session or a run spec (``"cpu"``, ``"spu:ABY3"``...; opened and
    closed here).  The weights are ``weights_owner``'s secret (put once), the prompt
    ``prompt_owner``'s, the ids are revealed to ``prompt_owner`` only, at the end (see the
    module docstring for what each party learns).

    Under MPC the logits are fixed-point approximations: where torch's top-1 margin is
    below the logits' error the greedy token can differ from torch's (a near-tie).
    ``approx=True`` adds MPC-friendly approximations that change the numbers (PUMA's
    piecewise GeLU, up to 2e-2 from GPT-2's; docs/generation.md has their cost and
    fidelity); without it every replacement is exact (the argmax, the matrix layouts).
    ``argmax``: ``"tree"`` (default: ``ops.tree_argmax``, a knockout tournament carrying the
    index; over GPT-2's vocabulary 8.4 MiB instead of SPU's 38 MiB and about half the time),
    ``"spu"`` (SPU's ``jnp.argmax``) or ``"first"`` (``ops.first_argmax``); all give torch's
    index exactly, ties to the first.

    ``candidates``: token ids (strictly increasing, public: they shape the program) that the
    greedy argmax chooses among, instead of the whole vocabulary: an approximation declared
    by the weights' owner (e.g. the tokens her model was trained to emit; ``make tiny-gpt2``
    writes them to ``candidates.json``).  The tokens outside are never chosen, even when
    their logit is the largest; the argmax's cost falls with their number (5,170 of GPT-2's
    50,257 for the trained small model).  Needs ``argmax="tree"``.

    One process per party (a production session, ``open_session(..., cluster=, party=)``):
    every party calls ``generate`` the same way.  ``prompt_ids`` is the ids in
    ``prompt_owner``'s process (or a loader of them) and ``None`` or a
    ``jax.ShapeDtypeStruct`` placeholder elsewhere: the owner checks its prompt and announces
    its shape (public, like the program's shapes).  ``module`` gives the architecture
    everywhere; its weights are read in ``weights_owner``'s process only.  The ids are
    returned in ``prompt_owner``'s process; elsewhere ``Generation.ids`` is ``None``.

    Every input is checked before any conversion or sharing (one-line
    :class:`GenerationError`).
    """
    vocab = vocab_size_of(module) if hasattr(module, "config") else None
    if vocab is None:
        as_nanogpt(module)  # raises the "not a GPT-2" error
    sp = session_plan(
        session,
        error=GenerationError,
        example="spu:ABY3",
        torch_error="session 'torch' has no MPC session; use ppml_torch.generation.torch_greedy",
    )
    r = roles(sp.parties)
    weights_owner = r.weights if weights_owner is None else weights_owner
    prompt_owner = r.data if prompt_owner is None else prompt_owner
    if sp.one_process_per_party:
        if prompt_owner not in sp.parties:
            raise GenerationError(
                f"prompt_owner {prompt_owner!r} is not a party of the session "
                f"({', '.join(sp.parties)})"
            )
        arr = _prompt_of(sp.session, prompt_ids, prompt_owner, vocab)  # one process per party
    elif is_placeholder(prompt_ids):
        raise GenerationError(
            "prompt_ids is a shape-only placeholder, which only a process without the prompt "
            "gives (one process per party); in one process give the ids"
        )
    else:
        arr = check_prompt(prompt_ids, vocab)
    check_lengths(arr.shape[1], max_new_tokens, positions_of(module), max_len)
    check_options(route, approx, argmax)
    check_candidates(candidates, vocab, argmax)
    sp.gate(calibration)
    with sp.borrow() as s:
        dec = Decoder(
            module,
            s,
            prompt_len=arr.shape[1],
            max_new_tokens=max_new_tokens,
            batch=arr.shape[0],
            route=route,
            max_len=max_len,
            weights_owner=weights_owner,
            prompt_owner=prompt_owner,
            approx=approx,
            argmax=argmax,
            candidates=candidates,
        )
        try:
            return dec.generate(arr)
        finally:
            dec.close()


def torch_greedy(
    module: nn.Module, prompt_ids: Any, max_new_tokens: int
) -> tuple[np.ndarray, np.ndarray]:
    """Plaintext reference in torch eager, the whole sequence recomputed per token.

    Runs in eval mode (the module's own mode is restored).  Returns ``(ids (B, N), logits
    (N, B, vocab))``; equals HF ``generate(do_sample=False)``.
    """
    import torch

    from ppml_torch.generation.checkpoint import is_hf_gpt2

    arr = check_prompt(prompt_ids, vocab_size_of(module))
    check_lengths(arr.shape[1], max_new_tokens, positions_of(module), None)
    seq = torch.as_tensor(arr, dtype=torch.long)
    logits = []
    was_training = module.training
    module.eval()  # dropout off, as in every other run; the user's mode is restored below
    try:
        with torch.no_grad():
            for _ in range(max_new_tokens):
                out = module(seq, use_cache=False).logits if is_hf_gpt2(module) else module(seq)
                last = out[:, -1].float()
                logits.append(last.numpy())
                seq = torch.cat([seq, last.argmax(-1, keepdim=True)], dim=1)
    finally:
        module.train(was_training)
    return seq[:, arr.shape[1] :].numpy(), np.stack(logits)

"""Greedy generation in a session: weights shared once, cache secret, loop secret to the end.

Who holds what (ABY3: alice, bob, carol; any session works, ``cpu`` included):

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

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ppml_torch.generation.checkpoint import (
    GenerationError,
    as_nanogpt,
    positions_of,
    vocab_size_of,
)
from ppml_torch.generation.programs import StepPrograms, build
from ppml_torch.generation.result import Generation
from ppml_torch.model import ROUTES
from ppml_torch.runners.placeholders import is_placeholder, shapes_of
from ppml_torch.runners.plan import session_plan

if TYPE_CHECKING:
    import torch.nn as nn

    from ppml_torch.runners import Handle, Session


def check_prompt(prompt_ids: Any, vocab_size: int) -> np.ndarray:
    """Prompt ids as int32 ``(B, T)``; one-line errors for empty, ragged, non-integer or
    out-of-vocabulary ids."""
    if hasattr(prompt_ids, "detach"):
        prompt_ids = prompt_ids.detach().cpu().numpy()
    try:
        arr = np.asarray(prompt_ids)
    except ValueError:
        raise GenerationError("prompt_ids are ragged; give every prompt the same length") from None
    if arr.size == 0:
        raise GenerationError("the prompt is empty; give at least one token id")
    if arr.dtype == object:
        raise GenerationError("prompt_ids are ragged; give every prompt the same length")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise GenerationError(f"prompt_ids must be integer token ids, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise GenerationError(f"prompt_ids must be (T,) or (B, T), got shape {arr.shape}")
    bad = arr[(arr < 0) | (arr >= vocab_size)]
    if bad.size:
        raise GenerationError(
            f"prompt token id {int(bad[0])} is outside the model's vocabulary 0..{vocab_size - 1}"
        )
    return arr.astype(np.int32)


def check_lengths(prompt_len: int, new: Any, positions: int, max_len: int | None) -> int:
    """The cache length needed (``T + N - 1``); errors when it exceeds the table or ``max_len``."""
    if isinstance(new, bool) or not isinstance(new, (int, np.integer)) or new < 1:
        raise GenerationError(f"max_new_tokens must be a positive integer, got {new!r}")
    need = prompt_len + int(new) - 1  # the last new token is never fed back
    if need > positions:
        raise GenerationError(
            f"a {prompt_len}-token prompt plus {new} new tokens needs {need} positions; the "
            f"model's position table has {positions}: shorten the prompt or ask fewer tokens"
        )
    if max_len is not None and need > max_len:
        raise GenerationError(
            f"a {prompt_len}-token prompt plus {new} new tokens needs {need} cache slots; "
            f"max_len is {max_len}"
        )
    return max_len if max_len is not None else need


def check_candidates(candidates: Any, vocab_size: int, argmax: str) -> np.ndarray | None:
    """Candidate token ids as a sorted int32 array (or None); one-line errors otherwise."""
    if candidates is None:
        return None
    arr = np.asarray(candidates)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise GenerationError("candidates must be a non-empty 1-D list of integer token ids")
    if arr.min() < 0 or arr.max() >= vocab_size:
        bad = int(arr[(arr < 0) | (arr >= vocab_size)][0])
        raise GenerationError(
            f"candidate token id {bad} is outside the model's vocabulary 0..{vocab_size - 1}"
        )
    if np.any(np.diff(arr) <= 0):
        raise GenerationError("candidates must be strictly increasing token ids (sort, dedupe)")
    if argmax != "tree":
        raise GenerationError(f"candidates need argmax='tree' (got argmax={argmax!r})")
    return arr.astype(np.int32)


def _ids_of(state):
    """The first output of a step: the ids (or the logits), without the caches."""
    return state[0]


ARGMAXES = ("spu", "tree", "first")


def _argmax(logits, how: str = "tree"):
    """The greedy token ``(B,)``, torch's (first of ties), under MPC: ``"tree"``
    (:func:`~ppml_torch.generation.ops.tree_argmax`, the default: over GPT-2's vocabulary 4.5x
    fewer bytes and sends than SPU's and about 2x less time), ``"spu"`` (``jnp.argmax``) or
    ``"first"`` (:func:`~ppml_torch.generation.ops.first_argmax`).  All three are exact."""
    import jax.numpy as jnp

    from ppml_torch.generation.ops import first_argmax, tree_argmax

    if how == "first":
        return first_argmax(logits)
    if how == "tree":
        return tree_argmax(logits)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


class Decoder:
    """Cached greedy decoding of one model for one prompt shape in one session.

    ``Decoder(module, session, batch=B, prompt_len=T, max_new_tokens=N)`` checks the sizes
    and builds the programs (conversion happens here, before anything is shared).  The
    weights are put once, on first use, and reused by every method until :meth:`close`.
    """

    def __init__(
        self,
        module: nn.Module,
        session: Session,
        *,
        prompt_len: int,
        max_new_tokens: int,
        batch: int = 1,
        route: str = "graph",
        max_len: int | None = None,
        weights_owner: str = "alice",
        prompt_owner: str = "bob",
        approx: bool = False,
        argmax: str = "tree",
        candidates: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        if route not in ROUTES:
            raise GenerationError(f"route {route!r} is unknown; use {' or '.join(ROUTES)}")
        for who, name in ((weights_owner, "weights_owner"), (prompt_owner, "prompt_owner")):
            if who not in session.parties:
                raise GenerationError(
                    f"{name} {who!r} is not a party of the session ({', '.join(session.parties)})"
                )
        if prompt_len < 1:
            raise GenerationError("the prompt is empty; give at least one token id")
        if not isinstance(approx, bool):
            raise GenerationError(f"approx must be True or False, got {approx!r}")
        if argmax not in ARGMAXES:
            raise GenerationError(f"argmax {argmax!r} is unknown; use {', '.join(ARGMAXES)}")
        self.argmax = argmax
        self.candidates = check_candidates(candidates, vocab_size_of(module), argmax)
        self.max_len = check_lengths(prompt_len, max_new_tokens, positions_of(module), max_len)
        self.session = session
        self.new = int(max_new_tokens)
        self.weights_owner, self.prompt_owner = weights_owner, prompt_owner
        t0 = time.perf_counter()
        self.programs: StepPrograms = build(
            as_nanogpt(module), route, batch, prompt_len, self.max_len, approx
        )
        self.prepare_s = time.perf_counter() - t0
        self._weights: Handle | None = None
        self._puts: list[tuple[str, str]] = []
        self._make_functions()

    # the functions the session compiles: made once, so every step reuses one program
    def _make_functions(self) -> None:
        import jax.numpy as jnp

        progs, n, T = self.programs, self.new, self.programs.prompt_len
        how, cand = self.argmax, self.candidates

        def pick(logits):  # (B, V) -> (B,) token ids
            if cand is None:
                return _argmax(logits, how)
            from ppml_torch.generation.ops import tree_argmax

            return tree_argmax(jnp.take(logits, cand, axis=-1), ids=cand)  # public columns

        def prefill(params, prompt):
            logits, kc, vc = progs.prefill(params, prompt)
            first = pick(logits)  # (B,)
            slots = jnp.arange(n)[None, :]  # (1, N)
            return jnp.where(slots == 0, first[:, None], 0), kc, vc  # ids (B, N)

        def decode_step(params, state, pos):
            ids, kc, vc = state
            slots = jnp.arange(n)[None, :]  # (1, N)
            j = pos - T  # slot of the token fed now (public)
            cur = jnp.sum(jnp.where(slots == j, ids, 0), axis=1, keepdims=True)  # (B, 1)
            logits, kc, vc = progs.decode(params, cur, kc, vc, pos)
            return jnp.where(slots == j + 1, pick(logits)[:, None], ids), kc, vc

        def prefill_logits(params, prompt):
            return progs.prefill(params, prompt)

        def decode_logits(params, idx, prev, pos):
            return progs.decode(params, idx, prev[1], prev[2], pos)

        self._prefill, self._decode = prefill, decode_step
        self._prefill_logits, self._decode_logits = prefill_logits, decode_logits

    def _put(self, value: Any, owner: str) -> Handle:
        h = self.session.put(value, owner=owner)
        self._puts.append((self.session.reports[-1].what, owner))
        return h

    def weights(self) -> Handle:
        """The weights' handle, put by their owner on the first call only.

        One process per party: the module's weights are read in the owner's process only;
        elsewhere the put takes their shapes."""
        if self._weights is None:
            params = self.programs.params
            if self.weights_owner not in self.session.local_parties:
                params = shapes_of(params)
            self._weights = self._put(params, self.weights_owner)
        return self._weights

    def _checked(self, prompt_ids: Any) -> Any:
        p = self.programs
        if is_placeholder(prompt_ids):  # another party's prompt (one process per party)
            if self.prompt_owner in self.session.local_parties:
                raise GenerationError(
                    f"the prompt is {self.prompt_owner}'s: give the ids in its own process, "
                    "not a shape-only placeholder"
                )
            shape = tuple(prompt_ids.shape)
            shape = (1, *shape) if len(shape) == 1 else shape
            if shape != (p.batch, p.prompt_len):
                raise GenerationError(
                    f"this decoder was built for prompts of shape {(p.batch, p.prompt_len)}, "
                    f"got a placeholder of shape {shape}"
                )
            import jax

            return jax.ShapeDtypeStruct(shape, np.int32)
        arr = check_prompt(prompt_ids, p.config.vocab_size)
        if arr.shape != (p.batch, p.prompt_len):
            raise GenerationError(
                f"this decoder was built for prompts of shape {(p.batch, p.prompt_len)}, "
                f"got {arr.shape}"
            )
        return arr

    def generate(self, prompt_ids: Any) -> Generation:
        """Greedy ids ``(B, N)``; the loop stays secret and bob gets the ids at the end."""
        s, T = self.session, self.programs.prompt_len
        arr = self._checked(prompt_ids)  # before anything is put
        first, first_put = len(s.reports), len(self._puts)
        t0 = time.perf_counter()
        had_weights = self._weights is not None
        w = self.weights()
        x = self._put(arr, self.prompt_owner)
        state = s.call(self._prefill, w, x, name="prefill")
        s.free(x)
        for j in range(1, self.new):
            pos = self._put(np.int32(T + j - 1), "public")  # the cache position is public
            nxt = s.call(self._decode, w, state, pos, name="decode_step")
            s.free(state)
            s.free(pos)
            state = nxt
        out = s.call(_ids_of, state, name="ids")
        s.free(state)
        got = s.reveal(out, to=self.prompt_owner)  # None in another party's process
        ids = None if got is None else np.asarray(got)
        s.free(out)
        wall = time.perf_counter() - t0
        puts = tuple(self._puts[first_put:])
        mine = {w for w, _ in puts}
        reports = tuple(
            r for r in s.reports[first:] if not r.what.startswith("put") or r.what in mine
        )
        weights_put = None if had_weights else next(r for r in reports if r.what == puts[0][0])
        return Generation(
            ids, self.programs.route, str(s.config.describe()), reports,
            puts, weights_put, self.prepare_s, wall,
        )  # fmt: skip

    def forced(
        self, prompt_ids: Any, tokens: Sequence[Sequence[int]] | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Teacher-forced run: bob feeds ``tokens`` ``(B, N-1)`` himself, one secret per step.

        Returns ``(logits (N, B, vocab), argmax (N, B))`` revealed to bob: for measuring the
        logits' error and comparing each step's argmax with plaintext from the same inputs
        (the fidelity check; :meth:`generate` is the private path).
        """
        s, p = self.session, self.programs
        toks = check_prompt(np.asarray(tokens).reshape(p.batch, -1), p.config.vocab_size)
        if toks.shape[1] != self.new - 1:
            raise GenerationError(
                f"forced: give {self.new - 1} tokens per row, got {toks.shape[1]}"
            )
        arr = self._checked(prompt_ids)
        w = self.weights()
        x = self._put(arr, self.prompt_owner)
        out = s.call(self._prefill_logits, w, x, name="prefill_logits")
        s.free(x)
        logits = []
        for j in range(self.new):
            lg = s.call(_ids_of, out, name="logits")  # the logits only, never the cache
            logits.append(np.asarray(s.reveal(lg, to=self.prompt_owner)))
            s.free(lg)
            if j == self.new - 1:
                break
            tok = self._put(toks[:, j : j + 1], self.prompt_owner)
            pos = self._put(np.int32(p.prompt_len + j), "public")
            nxt = s.call(self._decode_logits, w, tok, out, pos, name="decode_logits")
            for h in (tok, pos, out):
                s.free(h)
            out = nxt
        s.free(out)
        stacked = np.stack(logits)
        if self.candidates is not None:  # the argmax generate() computes: over candidates
            return stacked, self.candidates[stacked[..., self.candidates].argmax(-1)]
        return stacked, stacked.argmax(-1)

    def close(self) -> None:
        """Free the weights' shares."""
        if self._weights is not None:
            self.session.free(self._weights)
            self._weights = None


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
    weights_owner: str = "alice",
    prompt_owner: str = "bob",
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
    if route not in ROUTES:
        raise GenerationError(f"route {route!r} is unknown; use {' or '.join(ROUTES)}")
    if not isinstance(approx, bool):
        raise GenerationError(f"approx must be True or False, got {approx!r}")
    if argmax not in ARGMAXES:
        raise GenerationError(f"argmax {argmax!r} is unknown; use {', '.join(ARGMAXES)}")
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

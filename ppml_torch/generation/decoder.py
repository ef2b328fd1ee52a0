"""The cached greedy decoder: one model, one prompt shape, one session.

:class:`Decoder` checks the sizes and builds the step programs (conversion happens before
anything is shared); the weights are put once, by their owner, and reused until
:meth:`Decoder.close`.  :meth:`Decoder.generate` keeps the loop secret and reveals the ids to
the prompt's owner at the end; :meth:`Decoder.forced` is the teacher-forced fidelity check.
What one generation produced and cost is a :class:`Generation`.  The owners default to the
session's roles (:func:`ppml_torch.runners.roles.roles`: its first party holds the weights,
its second the prompt).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import types
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
from ppml_torch.generation.programs import StepPrograms, build
from ppml_torch.runners.placeholders import is_placeholder, shapes_of
from ppml_torch.runners.roles import roles

if TYPE_CHECKING:
    import torch.nn as nn

    from ppml_torch.runners import Handle, RunReport, Session
    from ppml_torch.runners.comm import CommStats


@dataclasses.dataclass(frozen=True)
class Generation:
    """What one generation produced and cost.

    ``ids``: the new token ids ``(B, N)`` (revealed to the prompt's owner; ``None`` in every
    other party's process when each party runs in its own process).  ``reports``: the
    session's records of this generation, in order (puts, prefill, steps).  ``puts``: the
    ``(report what, owner)`` of every value put in (``"public"`` for cache positions).
    """

    ids: np.ndarray | None
    route: str
    session: str
    reports: tuple[RunReport, ...]
    puts: tuple[tuple[str, str], ...]
    weights_put: RunReport | None  # None when the weights were put before (a reused Decoder)
    prepare_s: float  # conversion / tracing set-up before anything is shared
    wall_s: float  # from the weights' put to the revealed ids

    def _calls(self, name: str) -> list[RunReport]:
        return [r for r in self.reports if r.what == name]

    @property
    def prefill(self) -> RunReport:
        return self._calls("prefill")[0]

    @property
    def steps(self) -> list[RunReport]:
        return self._calls("decode_step")

    @property
    def compile_s(self) -> float | None:
        c = [r.compile_s for r in self.reports]
        return None if any(x is None for x in c) else sum(c)

    @property
    def step_s(self) -> float | None:
        """Median run time of one decode step (one generated token after the first)."""
        return statistics.median(r.run_s for r in self.steps) if self.steps else None

    @property
    def comm(self) -> CommStats | None:
        comms = [r.comm for r in self.reports if r.comm is not None]
        if not comms:
            return None
        out = comms[0]
        for c in comms[1:]:
            out = out + c
        return out

    def describe(self) -> str:
        """One row of what the generation cost, then the ids (``print(generation)``)."""
        header = ("route", "session", "share", "prompt", "token", "compile", "communication")
        step, comp, comm = self.step_s, self.compile_s, self.comm
        row = (
            self.route,
            self.session,
            "-" if self.weights_put is None else f"{self.weights_put.run_s:.2f}s",
            f"{self.prefill.run_s:.2f}s",
            "-" if step is None else f"{step:.3f}s",
            "n/a" if comp is None else f"{comp:.1f}s",
            "-" if comm is None else comm.describe(),
        )
        widths = [max(len(h), len(c)) for h, c in zip(header, row, strict=True)]
        lines = [
            "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
            for line in (header, row)
        ]
        ids = "not received here" if self.ids is None else str(np.asarray(self.ids).tolist())
        return "\n".join([*lines, f"ids: {ids}"])

    def __str__(self) -> str:
        return self.describe()


def _ids_of(state):
    """The first output of a step: the ids (or the logits), without the caches."""
    return state[0]


class Decoder:
    """Cached greedy decoding of one model for one prompt shape in one session.

    ``Decoder(module, session, batch=B, prompt_len=T, max_new_tokens=N)`` checks the sizes
    and builds the programs (conversion happens here, before anything is shared).  The
    weights are put once, on first use, and reused by every method until :meth:`close`.
    ``weights_owner``/``prompt_owner``: default, the session's roles (its first and second
    party).
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
        weights_owner: str | None = None,
        prompt_owner: str | None = None,
        approx: bool = False,
        argmax: str = "tree",
        candidates: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        check_options(route, approx, argmax)
        r = roles(session.parties)
        weights_owner = r.weights if weights_owner is None else weights_owner
        prompt_owner = r.data if prompt_owner is None else prompt_owner
        for who, name in ((weights_owner, "weights_owner"), (prompt_owner, "prompt_owner")):
            if who not in session.parties:
                raise GenerationError(
                    f"{name} {who!r} is not a party of the session ({', '.join(session.parties)})"
                )
        if prompt_len < 1:
            raise GenerationError("the prompt is empty; give at least one token id")
        self.argmax = argmax
        self.candidates = check_candidates(candidates, vocab_size_of(module), argmax)
        self.max_len = check_lengths(prompt_len, max_new_tokens, positions_of(module), max_len)
        self.session = session
        self.new = int(max_new_tokens)
        self.weights_owner, self.prompt_owner = weights_owner, prompt_owner
        t0 = time.perf_counter()
        self._module = module  # read again only if the weights are put again after close()
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

        # the programs' functions, not self.programs: its params are dropped once shared
        progs = types.SimpleNamespace(prefill=self.programs.prefill, decode=self.programs.decode)
        n, T = self.new, self.programs.prompt_len
        how, cand = self.argmax, self.candidates

        def pick(logits):  # (B, V) -> (B,) token ids
            from ppml_torch.generation.ops import greedy_argmax, tree_argmax

            if cand is None:
                return greedy_argmax(logits, how)

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
        elsewhere the put takes their shapes.  Once shared, the plaintext copy the library made
        for the put (converted, laid out for the programs) is dropped: the shares are what the
        steps use.  The user's module is never touched; a put after :meth:`close` converts it
        again."""
        if self._weights is None:
            p = self.programs
            params = p.params
            if params is None:  # dropped after an earlier put: read the module again
                params = build(
                    as_nanogpt(self._module), p.route, p.batch, p.prompt_len, p.max_len, p.approx
                ).params
            if self.weights_owner not in self.session.local_parties:
                params = shapes_of(params)
            self._weights = self._put(params, self.weights_owner)
            del params
            self.programs = dataclasses.replace(p, params=None)
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
        """Greedy ids ``(B, N)``; the loop stays secret and the prompt's owner gets the ids at the
        end."""
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
        """Teacher-forced run: the prompt's owner feeds ``tokens`` ``(B, N-1)``, one secret a step.

        Returns ``(logits (N, B, vocab), argmax (N, B))`` revealed to the prompt's owner: for measuring the
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

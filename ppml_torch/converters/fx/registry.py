"""The one registry of ATen -> JAX lowerings, keyed per ATen overload.

Family files in :mod:`ppml_torch.converters.fx.ops` register into it::

    lower, refuse = registry.family("elementwise")

    @lower(aten.add.Tensor)
    def add(x, y, alpha=1): ...

    @lower(aten.exp.default, mpc="exp is a polynomial approximation under SPU")
    def exp(x): ...

    refuse(aten.bernoulli.default, reason="random op ...")

A lowering receives the node's arguments with tensors already replaced by JAX
arrays (values computed from inputs or weights) or numpy arrays (constants
folded at convert time, public under MPC), in ATen's positional/keyword form,
and returns an array or a tuple of arrays.  ``mpc=`` marks a lowering that is
exact in float but only approximate under fixed-point MPC; the note lands in
the op table (:mod:`ppml_torch.converters.fx.table`).

A lowering of a multi-output op whose outputs cost differently declares
``used_outputs=True``: it then receives ``used_outputs=`` (the positions of its outputs
the graph reads, bound per node at conversion) and may return ``None`` for the others
(max pooling computes its argmax indices only where the graph reads them).

A lowering whose form is a choice of the caller (not of the graph) declares the
:class:`LoweringOptions` fields it reads with ``options=``; :meth:`Lowering.bind`
passes their values as keyword arguments, once per conversion::

    @lower(aten.embedding.default, options=("index_lowering",))
    def embedding(weight, indices, ..., *, index_lowering): ...
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Literal

Status = Literal["supported", "approximate-under-MPC", "unsupported"]
STATUSES: tuple[Status, ...] = ("supported", "approximate-under-MPC", "unsupported")
FAMILIES = (
    "elementwise",
    "reductions",
    "linalg",
    "shapes",
    "nn",
    "norm",
    "conv",
    "pool",
    "resize",
)

IndexLowering = Literal["auto", "take", "one_hot"]
INDEX_LOWERINGS: tuple[IndexLowering, ...] = ("auto", "take", "one_hot")
# "auto": one-hot up to this many table entries (class labels), a gather above (embeddings)
AUTO_ONE_HOT_MAX = 64


@dataclasses.dataclass(frozen=True)
class LoweringOptions:
    """Conversion choices that change how some ops are lowered, never what they compute.

    ``index_lowering``: the form of gathers on indices computed from inputs (secret under
    MPC): token ids of ``aten.embedding``, class labels of the ``aten.gather`` in a cross
    entropy, ``index_select``/``index`` with input indices.  Constant indices (positions)
    are a public gather either way.  Implemented in :mod:`.ops.index_lowering`.

    * ``"auto"`` (default): ``"one_hot"`` when the gathered axis has at most
      ``AUTO_ONE_HOT_MAX`` (64) entries (class labels: one-hot is far cheaper under every
      protocol), ``"take"`` above (embeddings: cheapest under ABY3, the protocol of the
      3-party GPT-2 runs; under SEMI2K/CHEETAH pass ``"one_hot"`` for fewer bytes).
    * ``"take"``: a gather, as ``jnp.take`` and Flax's ``nn.Embed``.  SPU runs it
      as a loop of secret-index slices, one per index: many rounds; bytes grow with
      log(table size) under ABY3, linearly under SEMI2K.  The cheapest under ABY3 for
      embeddings, by a margin that grows with the vocabulary.
    * ``"one_hot"``: ``one_hot(indices)`` times the table: one secret equality per (index,
      table entry) and a matmul, in a few rounds.  Fewer bytes than ``"take"`` under SEMI2K
      and CHEETAH at every vocabulary size measured, and far cheaper, in bytes and time,
      for few classes under every protocol (cross-entropy labels).

    The gradient with respect to the table is a one-hot product in both forms (JAX's own,
    a scatter-add with secret indices, costs orders of magnitude more).  The measured
    figures, per protocol and size, are kept in one place: ``bench/README.md``
    (``bench/bench_index_lowering.py``).
    """

    index_lowering: IndexLowering = "auto"

    def __post_init__(self) -> None:
        if self.index_lowering not in INDEX_LOWERINGS:
            raise ValueError(
                f"index_lowering={self.index_lowering!r} is not a lowering of gathers on input "
                f"indices; choose one of {', '.join(map(repr, INDEX_LOWERINGS))} "
                "(see ppml_torch.converters.fx.registry.LoweringOptions)"
            )


@dataclasses.dataclass(frozen=True)
class Lowering:
    """One registry entry: an ATen overload, its JAX function (None if refused) and status."""

    op: Any  # torch._ops.OpOverload
    fn: Callable[..., Any] | None
    family: str
    status: Status
    note: str = ""
    # check(*args, **kwargs) -> refusal reason or None, run at convert time on the node's
    # arguments (tensors appear as fx Nodes): refuses e.g. dropout with p > 0 in training mode.
    check: Callable[..., str | None] | None = None
    # names of the LoweringOptions fields fn takes as keyword arguments
    options: tuple[str, ...] = ()
    # fn takes used_outputs= (the output positions the graph reads) and may skip the others
    used_outputs: bool = False

    @property
    def name(self) -> str:
        return op_name(self.op)

    def bind(self, options: LoweringOptions) -> Callable[..., Any]:
        """``fn`` with the conversion options it declared filled in (the one place they reach it)."""
        if self.fn is None:
            raise ValueError(f"{self.name} is refused, it has no lowering to bind")
        if not self.options:
            return self.fn
        return functools.partial(self.fn, **{k: getattr(options, k) for k in self.options})


LOWERINGS: dict[Any, Lowering] = {}


def op_name(op: Any) -> str:
    """``torch.ops.aten.add.Tensor`` -> ``"aten.add.Tensor"``; other callables by their name."""
    if type(op).__name__ == "OpOverload":
        return str(op)
    module = getattr(op, "__module__", None)
    qual = getattr(op, "__qualname__", None) or getattr(op, "__name__", None)
    return f"{module}.{qual}" if module and qual else str(op)


OP_SCOPE = "op:"  # name-stack prefix of the ATen op inside its module's scope


def op_scope(op: Any) -> str:
    """``op:aten.addmm.default``: the name-stack entry of one lowered ATen op (no ``": "`` and
    not a Python identifier, so it is never read as a module's scope).  ``ppml_torch.profile``
    files each equation under the innermost one: a lowering may mark a part of its work as
    another op's (attention's softmax)."""
    return OP_SCOPE + op_name(op)


def _register(entry: Lowering) -> None:
    if entry.op in LOWERINGS:
        raise ValueError(
            f"{entry.name} is registered twice ({LOWERINGS[entry.op].family}, {entry.family})"
        )
    LOWERINGS[entry.op] = entry


def family(name: str) -> tuple[Callable[..., Any], Callable[..., None]]:
    """The ``lower`` decorator and ``refuse`` function of one family file."""
    if name not in FAMILIES:
        raise ValueError(f"unknown op family {name!r}; choose one of {FAMILIES}")

    def lower(
        *ops: Any,
        mpc: str | None = None,
        note: str = "",
        check: Callable[..., str | None] | None = None,
        options: tuple[str, ...] = (),
        used_outputs: bool = False,
    ) -> Callable[..., Any]:
        unknown = set(options) - {f.name for f in dataclasses.fields(LoweringOptions)}
        if unknown:
            raise ValueError(f"unknown lowering options {sorted(unknown)}; see LoweringOptions")

        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            for op in ops:
                status: Status = "approximate-under-MPC" if mpc else "supported"
                text = mpc if not note else (f"{mpc}; {note}" if mpc else note)
                _register(
                    Lowering(op, fn, name, status, text or "", check, tuple(options), used_outputs)
                )
            return fn

        return wrap

    def refuse(*ops: Any, reason: str) -> None:
        for op in ops:
            _register(Lowering(op, None, name, "unsupported", reason))

    return lower, refuse


def load() -> dict[Any, Lowering]:
    """Import every family file (filling the registry) and return the registry."""
    from ppml_torch.converters.fx import ops  # noqa: F401  (registers on import)

    return LOWERINGS


def family_file(fam: str) -> str:
    return f"ppml_torch/converters/fx/ops/{fam}.py"


def family_hint() -> str:
    """Where a new lowering goes, for the converter's "no lowering" error."""
    return f"ppml_torch/converters/fx/ops/<family>.py ({', '.join(FAMILIES)})"

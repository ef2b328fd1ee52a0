"""Who owns what: the data description ``fit`` and ``predict`` take.

Two splits:

* **vertical** (the homework): every party holds some feature *columns* of the same rows, one
  party holds the labels.  Inside the MPC program the model input is the concatenation of the
  parties' blocks (each a secret of its owner), in column order::

      data = vertical({"alice": (range(0, 15), x_alice), "bob": (range(15, 30), x_bob)},
                      labels=("bob", y), weights_owner="alice")

* **horizontal**: every party holds whole *rows* (features and labels); the training set is
  the parties' rows one after the other (alice's first, in the order given)::

      data = horizontal({"alice": (x_a, y_a), "bob": (x_b, y_b)}, weights_owner="alice")

A block is an array (numpy or torch) or a **loader**: a function of no arguments that returns
the array, called only when that party's value is put into the session (once per ``fit``).

**Named inputs** (Hugging Face models: ``input_ids``, ``attention_mask``, ``token_type_ids``)
are blocks passed to the model by keyword.  Horizontal: each party gives a dict of its blocks,
the same names at every party::

      data = horizontal({"bob": ({"input_ids": ids, "attention_mask": mask}, labels)},
                        weights_owner="alice")

Vertical: ``named={"attention_mask": ("bob", mask)}`` adds whole inputs of one owner, passed
by name, next to the column-split positional input.  ``labels`` is never a named input: it is
the label block (a model that computes its own loss gets it as ``labels=``).

**One process per party** (a production session, ``open_session(..., cluster=, party=)``):
every party runs the same program, but each process holds only its own data.  There a block
of another party is never loaded: give it as a loader (not called outside its owner's
process), or as a shape-only placeholder, ``jax.ShapeDtypeStruct((rows, cols), np.float32)``.
The shapes are **sent as public metadata**: each owner loads its blocks and announces their
shapes and dtypes to every party before any MPC work (:meth:`Session.announce`), so that
every process checks the description and converts the model for the same shapes.  A
placeholder is checked against what its owner announced (one line if it differs); a loader
needs no shapes at all.  A loader that fails, or a block that is not an array, is reported
in every party's process with the same one-line error.

``weights_owner`` puts the initial weights in; ``weights_to`` (default: the owner) is the one
party that receives the trained weights at the end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ppml_torch.errors import PpmlError
from ppml_torch.runners.placeholders import is_placeholder

from .owners import owners_blocks

ArrayLike = Any  # numpy array, torch tensor, or anything np.asarray takes
Loader = Callable[[], ArrayLike]


class DataError(PpmlError, ValueError):
    """The data description is inconsistent (who owns what, shapes, columns)."""


@dataclasses.dataclass(frozen=True)
class Block:
    """One party's piece: an array or a loader only its owner calls.

    ``columns`` (vertical split only): the model-input columns this block fills, in order.
    ``name``: the keyword the model takes this block as (``None``: the positional input).
    """

    owner: str
    value: ArrayLike | Loader
    columns: tuple[int, ...] | None = None
    name: str | None = None

    def load(self) -> np.ndarray:
        """The owner's array (calls the loader)."""
        try:
            value = self.value() if callable(self.value) else self.value
        except Exception as e:  # noqa: BLE001 - the user's loader: one line, every party
            text = " ".join(str(e).split())[:200]
            raise DataError(
                f"data: {self.owner}'s loader failed: {type(e).__name__}: {text}"
            ) from e
        if is_placeholder(value):
            raise DataError(
                f"data: {self.describe()} is a shape-only placeholder in {self.owner}'s own "
                "process; the owner gives the array (or a loader of it)"
            )
        if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
            value = value.detach().cpu().numpy()
        arr = np.asarray(value)
        if arr.dtype == object or arr.ndim == 0:
            raise DataError(
                f"data: {self.describe()} is not a numeric array (got {type(value).__name__} "
                f"of shape {arr.shape}); pass an array with rows first"
            )
        return arr

    def describe(self) -> str:
        """``bob's block`` / ``bob's attention_mask``: the block in a message."""
        return f"{self.owner}'s {self.name or 'block'}"


@dataclasses.dataclass(frozen=True)
class Data:
    """Feature blocks, label blocks, and who owns and receives the weights.

    Build it with :func:`vertical` or :func:`horizontal`, which check it.
    """

    split: str  # "vertical" or "horizontal"
    features: tuple[Block, ...]
    labels: tuple[Block, ...]  # empty for predict-only data
    weights_owner: str
    weights_to: str

    @property
    def parties(self) -> tuple[str, ...]:
        seen: list[str] = []
        for b in (*self.features, *self.labels):
            if b.owner not in seen:
                seen.append(b.owner)
        for p in (self.weights_owner, self.weights_to):
            if p not in seen:
                seen.append(p)
        return tuple(seen)

    @property
    def label_owners(self) -> tuple[str, ...]:
        return tuple(b.owner for b in self.labels)

    @property
    def names(self) -> tuple[str | None, ...]:
        """The keyword of each feature block (``None``: the positional input)."""
        return tuple(b.name for b in self.features)

    @property
    def input_names(self) -> tuple[str, ...]:
        """The named inputs, each once, in order."""
        return tuple(dict.fromkeys(n for n in self.names if n is not None))


def _party(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise DataError(f"data: {what} must be a party name such as 'alice', got {name!r}")
    return name


def vertical(
    features: Mapping[str, tuple[Sequence[int] | range, ArrayLike | Loader]],
    labels: tuple[str, ArrayLike | Loader] | None = None,
    *,
    weights_owner: str,
    weights_to: str | None = None,
    named: Mapping[str, tuple[str, ArrayLike | Loader]] | None = None,
) -> Data:
    """Feature columns split between parties; ``labels`` is ``(owner, labels)``.

    ``features`` maps each party to ``(columns, block)``: the model-input columns the block
    fills (e.g. ``range(0, 15)``) and the block (rows x those columns) or a loader of it.
    Together the columns must be ``0 .. F-1``, each exactly once.  ``labels=None`` describes
    inputs for :func:`ppml_torch.predict`.  ``named={"attention_mask": (owner, block)}``: whole
    inputs of one owner each, passed to the model by keyword (same rows).
    """
    if not isinstance(features, Mapping) or not features:
        raise DataError(
            "data: vertical() needs features={party: (columns, block)}, e.g. "
            "{'alice': (range(0, 15), x_alice), 'bob': (range(15, 30), x_bob)}"
        )
    blocks = []
    owner_of: dict[int, str] = {}
    for party, entry in features.items():
        _party(party, "a feature owner")
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise DataError(
                f"data: features[{party!r}] must be (columns, block), e.g. (range(0, 15), x)"
            )
        cols, value = entry
        try:
            cols = tuple(int(c) for c in cols)
        except TypeError:
            raise DataError(
                f"data: the columns of {party!r} must be a range or a list of ints, got {cols!r}"
            ) from None
        if not cols:
            raise DataError(
                f"data: party {party!r} has no feature columns; give it some or leave it out"
            )
        for c in cols:
            if c < 0:
                raise DataError(f"data: column {c} of {party!r} is negative")
            if c in owner_of:
                raise DataError(
                    f"data: feature column {c} is given by both {owner_of[c]!r} and {party!r}; "
                    "each column has exactly one owner"
                )
            owner_of[c] = party
        blocks.append(Block(party, value, cols))
    blocks += _named_blocks(named)
    n_cols = max(owner_of) + 1
    missing = [c for c in range(n_cols) if c not in owner_of]
    if missing:
        raise DataError(
            f"data: feature columns {_span(missing)} are owned by no party (columns must cover "
            f"0..{n_cols - 1}); add them to a party's block"
        )
    label_blocks: tuple[Block, ...] = ()
    if labels is not None:
        if not (isinstance(labels, tuple) and len(labels) == 2):
            raise DataError("data: labels must be (owner, labels), e.g. ('bob', y)")
        label_blocks = (Block(_party(labels[0], "the labels' owner"), labels[1]),)
    owner = _party(weights_owner, "weights_owner")
    return Data(
        "vertical", tuple(blocks), label_blocks, owner, _party(weights_to or owner, "weights_to")
    )


def horizontal(
    rows: Mapping[str, tuple[Any, ArrayLike | Loader | None]],
    *,
    weights_owner: str,
    weights_to: str | None = None,
) -> Data:
    """Whole rows per party: ``rows={party: (features, labels)}`` (labels ``None`` for predict).

    ``features`` is one block (the model's positional input) or a dict of named blocks, e.g.
    ``{"input_ids": ids, "attention_mask": mask}``, passed to the model by keyword; every party
    gives the same names.
    """
    if not isinstance(rows, Mapping) or not rows:
        raise DataError(
            "data: horizontal() needs rows={party: (features, labels)}, e.g. "
            "{'alice': (x_a, y_a), 'bob': (x_b, y_b)}"
        )
    feats, labs = [], []
    for party, entry in rows.items():
        _party(party, "a row owner")
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise DataError(f"data: rows[{party!r}] must be (features, labels)")
        if isinstance(entry[0], Mapping):
            feats += [Block(party, v, None, _name(k, party)) for k, v in entry[0].items()]
        else:
            feats.append(Block(party, entry[0]))
        if entry[1] is not None:
            labs.append(Block(party, entry[1]))
    if labs and len(labs) != len(rows):
        no = [p for p in rows if p not in {lb.owner for lb in labs}]
        raise DataError(
            f"data: {', '.join(no)} give rows without labels; every party of a horizontal split "
            "gives labels for its rows"
        )
    names = {p: tuple(b.name for b in feats if b.owner == p) for p in rows}
    if len(set(names.values())) != 1:
        raise DataError(
            f"data: the parties give different inputs ({', '.join(f'{p}: {list(n)}' for p, n in names.items())}); "
            "every party of a horizontal split gives the same named inputs, in the same order"
        )
    if not feats:
        raise DataError("data: a party gives an empty dict of inputs; give its blocks by name")
    owner = _party(weights_owner, "weights_owner")
    return Data(
        "horizontal", tuple(feats), tuple(labs), owner, _party(weights_to or owner, "weights_to")
    )


def _name(key: Any, party: str) -> str:
    """A named input's keyword: a Python identifier, and never ``labels`` (the label block)."""
    if not isinstance(key, str) or not key.isidentifier():
        raise DataError(
            f"data: {party}'s input name {key!r} is not a keyword argument name; use the model's "
            "argument names, e.g. 'input_ids', 'attention_mask'"
        )
    if key == "labels":
        raise DataError(
            f"data: {party} gives 'labels' as a named input; labels are the label block: "
            "(features, labels) per party (horizontal) or labels=(owner, y) (vertical)"
        )
    return key


def _named_blocks(named: Mapping[str, tuple[str, Any]] | None) -> list[Block]:
    """The blocks of ``vertical(named=...)``: ``{name: (owner, block)}``."""
    if named is None:
        return []
    if not isinstance(named, Mapping):
        raise DataError(
            "data: named= must be {name: (owner, block)}, e.g. {'attention_mask': ('bob', m)}"
        )
    out = []
    for key, entry in named.items():
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise DataError(f"data: named[{key!r}] must be (owner, block), e.g. ('bob', mask)")
        owner = _party(entry[0], f"the owner of {key!r}")
        out.append(Block(owner, entry[1], None, _name(key, owner)))
    return out


def _span(cols: Sequence[int]) -> str:
    if len(cols) > 1 and list(cols) == list(range(cols[0], cols[-1] + 1)):
        return f"{cols[0]}-{cols[-1]}"
    return ", ".join(map(str, cols[:10])) + (" ..." if len(cols) > 10 else "")


@dataclasses.dataclass(frozen=True)
class Loaded:
    """The arrays of a :class:`Data`, loaded by their owners, and the public shapes."""

    data: Data
    # one per feature block, in data.features order; another process's block (one process per
    # party) is a jax.ShapeDtypeStruct of the shape its owner announced
    features: tuple[Any, ...]
    labels: tuple[Any, ...]
    n_rows: int
    n_features: int
    column_order: tuple[int, ...] | None  # vertical: model column of each concatenated column

    @property
    def example_row_shape(self) -> tuple[int, ...]:
        """The row shape of the positional input (of the first named one if there is none)."""
        if self.data.split == "vertical":
            return (self.n_features,)
        return tuple(self.features[0].shape[1:])

    def rows_of(self, n: int) -> tuple[list[Any], dict[str, Any]]:
        """The model's inputs for ``n`` rows as ``(shape, dtype)``: positional and named."""
        positional, named = [], {}
        for b, a in zip(self.data.features, self.features, strict=True):
            if b.name is None:
                if not positional:
                    positional.append(((n, *self.example_row_shape), a.dtype))
            elif b.name not in named:
                named[b.name] = ((n, *a.shape[1:]), a.dtype)
        return positional, named


def load(data: Data, parties: Sequence[str], *, need_labels: bool, session: Any = None) -> Loaded:
    """Check ``data`` against the session's ``parties`` and load every block (owners' loaders).

    With a ``session`` that holds only some parties' data (one process per party), only the
    blocks of :attr:`Session.local_parties` are loaded; the others are
    ``jax.ShapeDtypeStruct`` placeholders of the shapes their owners announced.  Every check
    is cheap and runs before any MPC work, on the same shapes in every process.
    """
    if not isinstance(data, Data):
        raise DataError(
            f"data must be built with ppml_torch.train.vertical(...) or horizontal(...), "
            f"got {type(data).__name__}"
        )
    for p in data.parties:
        if p not in parties:
            raise DataError(
                f"data: party {p!r} is not a party of the session ({', '.join(parties)}); "
                "use the session's party names"
            )
    if need_labels and not data.labels:
        raise DataError(
            "data: the labels are owned by no party; pass labels=(owner, y) (vertical) or "
            "(features, labels) per party (horizontal)"
        )
    local = tuple(parties) if session is None else tuple(session.local_parties)
    blocks = (*data.features, *data.labels)
    if session is None or set(local) >= set(session.parties):
        everything = [b.load() for b in blocks]  # one process holds every party's data
    else:
        everything = owners_blocks(blocks, local, session.announce, DataError)
    feats = tuple(everything[: len(data.features)])
    labs = tuple(everything[len(data.features) :])
    column_order = None
    if data.split == "vertical":
        rows = {b.describe(): a.shape[0] for b, a in zip(data.features, feats, strict=True)}
        rows.update(
            {f"{b.owner} (labels)": a.shape[0] for b, a in zip(data.labels, labs, strict=True)}
        )
        if len(set(rows.values())) != 1:
            raise DataError(
                f"data: the parties' blocks have different numbers of rows ({rows}); a vertical "
                "split needs the same rows in the same order at every party"
            )
        positional = [(b, a) for b, a in zip(data.features, feats, strict=True) if b.name is None]
        for b, a in positional:
            if a.ndim != 2 or a.shape[1] != len(b.columns):
                raise DataError(
                    f"data: {b.owner}'s block has shape {a.shape} but {len(b.columns)} columns "
                    f"are declared for it; give a (rows, {len(b.columns)}) array"
                )
        n_rows = feats[0].shape[0]
        order = tuple(c for b, _ in positional for c in b.columns)
        n_features = len(order)
        column_order = None if order == tuple(range(n_features)) else order
    else:
        n_rows = _horizontal_rows(data, feats, labs)
        first = feats[0]
        n_features = int(np.prod(first.shape[1:]))
    if n_rows == 0:
        raise DataError("data: there are no rows")
    return Loaded(data, feats, labs, n_rows, n_features, column_order)


def _horizontal_rows(data: Data, feats: Sequence[Any], labs: Sequence[Any]) -> int:
    """The rows of a horizontal split (every check on the parties' shapes first)."""
    for name in dict.fromkeys(data.names):
        widths = {
            b.owner: a.shape[1:]
            for b, a in zip(data.features, feats, strict=True)
            if b.name == name
        }
        if len(set(widths.values())) != 1:
            what = "rows" if name is None else f"{name!r} rows"
            raise DataError(
                f"data: the parties' {what} have different shapes ({widths}); a horizontal split "
                "needs the same features at every party"
            )
    rows: dict[str, int] = {}
    for b, a in zip(data.features, feats, strict=True):
        if a.shape[0] == 0:
            what = "" if b.name is None else f" of {b.name!r}"
            raise DataError(f"data: {b.owner} gives no rows{what}; leave it out or give it rows")
        if rows.setdefault(b.owner, a.shape[0]) != a.shape[0]:
            raise DataError(
                f"data: {b.owner} gives {rows[b.owner]} rows of one input but {a.shape[0]} of "
                f"{b.name!r}; every input of a party has the same rows"
            )
    for lb, y in zip(data.labels, labs, strict=True):
        if y.shape[0] != rows[lb.owner]:
            raise DataError(
                f"data: {lb.owner} gives {rows[lb.owner]} rows of features but {y.shape[0]} labels"
            )
    return sum(rows.values())

"""Before any MPC work: the WHOLE training step checked for fixed-point range.

``fit`` under MPC runs one training step (forward, loss, backward, optimizer update: the
:meth:`~ppml_torch.train.programs.TrainPlan.train_step` the epoch program scans) in plaintext
through :func:`ppml_torch.calibration.calibrate_function`, judged at the session's field and
fraction bits, and refuses a step that would overflow (or leave the range of SPU's ``sqrt``,
``log`` or division) in one line (:class:`TrainingRangeError`) naming the value (the loss,
a gradient, Adam's moments, ...), where it is, and the fix (scale the targets or features,
or another field: the other setting is checked too before it is suggested).

**What the check sees** (``fit(range_check=...)``; docs/fit.md measures both):

* ``"auto"`` in one process (every party's blocks are there): the owners' rows themselves,
  two batches of them: the first batch of epoch 1, and the ``batch_size`` rows with the
  largest magnitudes (per column, relative to the column's largest);
* ``"auto"`` with one process per party, or ``"bounds"``: each owner discloses, per column
  of its blocks, only the power of two above the column's largest magnitude and whether it
  has negative values (:class:`ColumnBounds`; integers: the power of two above the largest
  id); a batch drawn uniformly inside those bounds (public seed) is checked in the weights'
  owner's process, on its weights, and the one-line verdict is sent to every party;
* ``"off"``: no check (``calibration=`` remains the hand route).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .checks import RANGE_CHECKS, FitError
from .layout import InputLayout
from .programs import TrainPlan

__all__ = ["RANGE_CHECKS", "ColumnBounds", "TrainingRangeError", "bounds_of", "verdict"]


# what calibration's module paths are, in a training step (transforms.py and programs.py name
# these scopes)
_VALUES = {
    "loss": "the loss",
    "adam_m": "Adam's first moment (s*m)",
    "adam_v": "Adam's second moment (s^2*v)",
    "adam_step": "Adam's step m/(sqrt(v)+eps) (its sqrt takes the second moment s^2*v)",
    "momentum": "SGD's momentum buffer",
    "(root)": "the gradients and the weight update",
    "(inputs)": "the weights or the data",
}


class TrainingRangeError(FitError):
    """The training step would leave the fixed-point range under MPC (found in plaintext,
    before any MPC work)."""


@dataclasses.dataclass(frozen=True)
class ColumnBounds:
    """What one owner discloses about one block for the check across processes: per column
    (a row's elements, flattened), the power-of-two exponent above its largest magnitude
    (``None``: all zeros) and whether it has negative values; ``integer`` for ids."""

    exponents: tuple[int | None, ...]
    negative: tuple[bool, ...]
    integer: bool

    def draw(self, shape: tuple[int, ...], dtype: Any, rng: np.random.Generator) -> np.ndarray:
        """Rows drawn uniformly inside the bounds (integers: ids below the bound)."""
        n, cols = shape[0], len(self.exponents)
        hi = np.array([0.0 if e is None else 2.0**e for e in self.exponents])
        if self.integer:
            out = np.floor(rng.uniform(0, 1, (n, cols)) * hi).astype(np.int64)
        else:
            lo = np.where(np.array(self.negative), -hi, 0.0)
            out = rng.uniform(lo, hi, (n, cols))
        return out.reshape(shape).astype(dtype)


def bounds_of(array: np.ndarray) -> ColumnBounds:
    a = np.asarray(array)
    flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
    integer = np.issubdtype(a.dtype, np.integer)
    top = np.abs(flat.astype(np.float64)).max(axis=0) + (1.0 if integer else 0.0)
    exps = tuple(None if t == 0 else math.ceil(math.log2(t)) for t in top)
    neg = tuple(bool(v) for v in (flat < 0).any(axis=0))
    return ColumnBounds(exps, neg, bool(integer))


def real_samples(
    x: np.ndarray, y: np.ndarray, batch_size: int, first_order: np.ndarray | None
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The first batch of epoch 1 and the ``batch_size`` rows of the largest magnitudes."""
    first = np.arange(batch_size) if first_order is None else first_order[:batch_size]
    scores = np.zeros(len(x))
    for a in (x, y):
        a = np.asarray(a)
        if np.issubdtype(a.dtype, np.floating):
            flat = np.abs(a.reshape(len(a), -1).astype(np.float64))
            scores = np.maximum(scores, (flat / np.maximum(flat.max(axis=0), 1e-30)).max(axis=1))
    extreme = np.sort(np.argsort(-scores, kind="stable")[:batch_size])
    out = [("the first batch", x[first], y[first])]
    if not np.array_equal(extreme, np.sort(first)):
        out.append(("the rows of the largest magnitudes", x[extreme], y[extreme]))
    return out


def verdict(
    samples: Sequence[tuple[str, Any, Any]],
    step_at: Callable[[tuple[str, int]], tuple[Any, Any, Any]],
    fixed_point: tuple[str, int],
) -> str | None:
    """The one-line refusal of the first sample whose step leaves the range, or ``None``.

    ``step_at(fixed_point) -> (state, train_step, forward)``: the plaintext initial state
    and the step (and forward pass with the loss) mapped for that setting (Adam's MPC-safe
    form depends on it).
    """
    from ppml_torch.calibration import calibrate_function
    from ppml_torch.calibration.report import BLOCKING

    field, bits = fixed_point
    state, step, forward = step_at(fixed_point)
    for where, xb, yb in samples:
        report = calibrate_function(
            step, (state, xb, yb), field=field, fraction_bits=bits, source="the training step"
        )
        found = [p for p in report.problems() if p.risk in BLOCKING]
        if not found:
            continue
        p = found[0]
        value = _value(p, forward, state, xb, yb, fixed_point)
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        return (
            f"the training step would give wrong numbers under MPC on {field} with {bits} "
            f"fraction bits (checked in plaintext on {where}, before any MPC work): {value}: "
            f"{p.risk}: {p.detail}{more}; {_fix(samples, step_at, fixed_point)}"
        )
    return None


def _value(p: Any, forward: Any, state: Any, xb: Any, yb: Any, fp: tuple[str, int]) -> str:
    if p.module in _VALUES:
        return _VALUES[p.module]
    from ppml_torch.calibration import calibrate_function

    kind = f" ({p.kind})" if p.kind else ""
    alone = calibrate_function(forward, (state, xb, yb), field=fp[0], fraction_bits=fp[1])
    if any(q.module == p.module and q.risk == p.risk for q in alone.problems()):
        return f"module {p.module}{kind}, forward pass"
    return f"the gradient through module {p.module}{kind} (backward pass)"


def _fix(
    samples: Sequence[tuple[str, Any, Any]],
    step_at: Callable[[tuple[str, int]], tuple[Any, Any, Any]],
    fixed_point: tuple[str, int],
) -> str:
    """Scale the data (its magnitudes named), or a setting that is checked to hold."""
    from ppml_torch.runners.config import FIELD_FRACTION_BITS

    sizes = []  # the data past 1 in magnitude: the values worth scaling
    for what, k in (("targets", 2), ("features", 1)):
        if not np.issubdtype(np.asarray(samples[0][k]).dtype, np.floating):
            continue
        top = max(float(np.abs(np.asarray(s[k], np.float64)).max()) for s in samples)
        if top > 1.0:
            sizes.append(f"the {what} (|{'y' if k == 2 else 'x'}| up to {top:.3g})")
    if sizes:
        fix = "scale " + " or ".join(sizes) + " down"
    else:
        fix = "scale the initial weights or the learning rate down"
    for other in (("FM128", FIELD_FRACTION_BITS["FM128"]),):
        if other == tuple(fixed_point):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ok = verdict_holds(samples, step_at, other)
        if ok:
            return f"{fix}, or use field {other[0]!r} (checked: this step fits {other[0]} with {other[1]} fraction bits)"
        return f"{fix} ({other[0]} with {other[1]} fraction bits does not hold it either)"
    return fix


def verdict_holds(
    samples: Sequence[tuple[str, Any, Any]],
    step_at: Callable[[tuple[str, int]], tuple[Any, Any, Any]],
    fixed_point: tuple[str, int],
) -> bool:
    """Whether every sample's step stays in range under ``fixed_point``."""
    from ppml_torch.calibration import calibrate_function
    from ppml_torch.calibration.report import BLOCKING

    state, step, _ = step_at(fixed_point)
    for _, xb, yb in samples:
        report = calibrate_function(
            step, (state, xb, yb), field=fixed_point[0], fraction_bits=fixed_point[1]
        )
        if any(p.risk in BLOCKING for p in report.problems()):
            return False
    return True


def run(
    mode: str,
    *,
    session: Any,
    local_parties: Sequence[str],
    one_process_per_party: bool,
    loaded: Any,
    layout: Any,
    batch_size: int,
    first_order: np.ndarray | None,
    step_at: Callable[[tuple[str, int]], tuple[Any, Any, Any]],
    fixed_point: tuple[str, int],
    id_limits: tuple[int | None, int | None],
    seed: int,
) -> str:
    """Check the step (:func:`verdict`) on the samples ``mode`` allows; raise
    :class:`TrainingRangeError` on a refusal, in every party's process.  Returns what was
    checked (for the history)."""
    data = loaded.data
    if mode == "auto" and not one_process_per_party:
        x, y = layout.assemble((*loaded.features, *loaded.labels))
        samples = real_samples(np.asarray(x), np.asarray(y), batch_size, first_order)
        found = verdict(samples, step_at, fixed_point)
        what = "the owners' rows"
    else:
        blocks = (*data.features, *data.labels)
        arrays = (*loaded.features, *loaded.labels)

        def mine(party: str) -> dict[int, ColumnBounds]:
            return {
                i: bounds_of(a)
                for i, (b, a) in enumerate(zip(blocks, arrays, strict=True))
                if b.owner == party
            }

        every: dict[int, ColumnBounds] = {}
        if session is not None and one_process_per_party:
            for got in session.announce(mine).values():
                every.update(got)
        else:
            for p in local_parties:
                every.update(mine(p))
        x, y = _drawn(every, arrays, layout, batch_size, id_limits, seed)
        samples = [("a batch drawn inside the owners' column bounds", x, y)]
        what = "a batch inside the owners' announced column bounds"
        owner = data.weights_owner
        if session is not None and one_process_per_party:
            found = session.announce(
                lambda p: verdict(samples, step_at, fixed_point) if p == owner else None
            )[owner]
        else:
            found = verdict(samples, step_at, fixed_point)
    if found is not None:
        raise TrainingRangeError(found)
    return what


def _drawn(
    bounds: dict[int, ColumnBounds],
    arrays: Sequence[Any],
    layout: Any,
    batch_size: int,
    id_limits: tuple[int | None, int | None],
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 0x5EED])
    n_feat = layout.n_feature_blocks
    if layout.split == "horizontal":  # one set of columns: the owners' bounds combined
        parts = []
        for idx in (range(n_feat), range(n_feat, len(arrays))):
            bs = [bounds[i] for i in idx]
            merged = ColumnBounds(
                tuple(
                    None if all(e is None for e in es) else max(e for e in es if e is not None)
                    for es in zip(*(b.exponents for b in bs), strict=True)
                ),
                tuple(any(n) for n in zip(*(b.negative for b in bs), strict=True)),
                bs[0].integer,
            )
            a = arrays[idx[0]]
            parts.append(merged.draw((batch_size, *a.shape[1:]), a.dtype, rng))
        x, y = parts
    else:
        drawn = [
            bounds[i].draw((batch_size, *a.shape[1:]), a.dtype, rng) for i, a in enumerate(arrays)
        ]
        x, y = (np.asarray(v) for v in layout.assemble(tuple(drawn)))
    limits = id_limits
    if np.issubdtype(x.dtype, np.integer) and limits[0]:
        x = x % limits[0]
    if np.issubdtype(y.dtype, np.integer) and limits[1]:
        y = y % limits[1]
    return np.asarray(x), np.asarray(y)


def check_fit_step(
    mode: str, sp: Any, loaded: Any, layout: InputLayout, plan: TrainPlan, opt: Any,
    model: Any, params: Any, shuffle: bool, seed: int,
) -> str:  # fmt: skip
    """The whole step checked in plaintext before any MPC work (:mod:`.preflight`)."""
    import warnings

    from .state import TrainState

    trained, fixed = plan.leaves.split(params)

    def step_at(fixed_point: tuple[str, int]) -> tuple[Any, Any, Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Adam's MPC form at another setting: no news
            topt = opt.topt if fixed_point == sp.fixed_point else opt.at(fixed_point)
        at = dataclasses.replace(plan, tx=topt.tx, sentinel=None)
        state = TrainState(trained, fixed, opt.initial(topt, model, plan.leaves.names, trained))

        def forward(st: TrainState, xb: Any, yb: Any) -> Any:
            return at.loss(at.apply(at.leaves.merge(st.trainable, st.fixed, st.buffers), xb), yb)

        return state, at.train_step, forward

    first_order = np.random.default_rng(seed).permutation(loaded.n_rows) if shuffle else None
    y0 = loaded.labels[0]
    classes = None
    if np.issubdtype(y0.dtype, np.integer):
        import jax

        xb = jax.ShapeDtypeStruct(
            (plan.batches.batch_size, *loaded.example_row_shape), loaded.features[0].dtype
        )
        classes = int(jax.eval_shape(model.apply, params, xb).shape[-1])
    ids = [spec.index_size for spec in model.inputs if spec.index_size and spec.arg == 0]
    return run(
        "bounds" if mode == "bounds" else "auto",
        session=sp.session,
        local_parties=sp.local_parties,
        one_process_per_party=sp.one_process_per_party,
        loaded=loaded,
        layout=layout,
        batch_size=plan.batches.batch_size,
        first_order=first_order,
        step_at=step_at,
        fixed_point=sp.fixed_point,
        id_limits=(min(ids) if ids else None, classes),
        seed=seed,
    )

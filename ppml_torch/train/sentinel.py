"""The second line of defence against overflow: a sentinel inside the epoch program.

Under MPC a product that leaves the fixed-point range wraps: the result is a wrong number,
with no error, and it is in range by construction (so a range check of the value itself
cannot see it).  What can be seen are scalars that real numbers bound:

* **the gradient, projected**: ``<r, g>`` for a public random sign vector ``r`` (a local sum
  of the gradient's elements with public signs: no multiplication, no communication).  Each
  element of a right gradient is a product or a dot product, below the product limit
  ``P = 2**(k-2-2f)`` (FM64/18: 6.7e7), so ``|<r, g>| < n * P`` (``n`` trained elements);
  a wrapped gradient is a garbage ring element, past that bound unless it lands within
  ``n * P`` of zero (FM64/18, 600 elements: 1 step in 400; every later step of the epoch is
  garbage too, and checked again).  ``||g||`` itself would cost a product per element per
  step: measured +30% bytes on the homework (``bench/bench_sentinel.py``);
* **the trained weights at the end of the epoch**, projected the same way, with the same
  bound (a weight past ``P`` makes every product it enters overflow): an update broken in
  the last step (Adam's ``sqrt`` past its range: a huge step) shows there;
* **the loss of one batch at the weights the epoch ends with** (the epoch's last full batch:
  one more forward pass per epoch), and every step's loss when the epoch computes it anyway
  (revealed, or a plaintext session): below ``-LOSS_SLACK`` for losses that cannot be
  negative (``MSELoss``, ``BCEWithLogitsLoss``, ``CrossEntropyLoss`` with non-negative
  weights; the approximations of ``log``/``exp`` are off by at most 3e-5 there,
  ``equivalence/op_errors.json``), or past ``P`` in magnitude (a mean squared error that large
  has an element whose square overflowed).  This is the check that catches issue 19's
  diabetes runs: their weights end at about 1e7, within the projections' bounds, and the
  mean squared error of 1e7-sized predictions wraps.  When the loss is not revealed MPC
  skips computing it in the steps (only its gradient is needed): checking every step's loss
  would cost its forward every step (nanoGPT's cross entropy: +24% bytes, +75% sends), the
  one probe per epoch costs one forward per epoch.

Each step's checks are outputs of the scan; at the end of the epoch one vectorised
comparison flags them, and only ``any(flags)``, ONE bit, is revealed, to the label owner
(whether the next epoch runs is then visible to every party: ``fit`` stops).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

LOSS_SLACK = 2.0**-10
SEED = 19  # the public signs' seed (any: the signs reveal nothing)


@dataclasses.dataclass(frozen=True, eq=False)
class Sentinel:
    """The bounds an epoch's scalars are checked against (public, set from the field).

    Attributes:
      bound: ``|<r, g>|`` and ``|<r, w>|`` at or above this are wrong: ``n * P``, at most a
        quarter of the encodable range (a sum that large could wrap itself).
      loss_bound: ``|loss|`` at or above this is wrong (the product limit ``P``).
      nonnegative: the loss cannot be negative (a built-in loss with non-negative weights).
      check_loss: the epoch computes every step's loss anyway (it is revealed): check them.
      plus, minus: the indices (into the flattened trained leaves) with sign +1 and -1.
    """

    bound: float
    loss_bound: float
    nonnegative: bool
    check_loss: bool
    plus: np.ndarray
    minus: np.ndarray

    @classmethod
    def of(
        cls, field: str, fraction_bits: int, n_trained: int, loss_fn: Any, *, check_loss: bool
    ) -> Sentinel:
        """The sentinel of ``n_trained`` trained elements at a fixed-point setting;
        ``check_loss``: every step's loss is computed anyway, so it is checked too."""
        from ppml_torch.runners.config import fixed_point_product_limit, fixed_point_range

        limit, _ = fixed_point_range(field, fraction_bits)
        product = fixed_point_product_limit(field, fraction_bits)
        n = max(int(n_trained), 1)
        order = np.random.default_rng(SEED).permutation(n).astype(np.int32)
        plus, minus = np.sort(order[: (n + 1) // 2]), np.sort(order[(n + 1) // 2 :])
        bound = min(n * product, limit / 4)
        return cls(bound, product, nonnegative(loss_fn), check_loss, plus, minus)

    def project(self, tree: Any) -> Any:
        """``<r, leaves>``: the flattened leaves summed with the public signs (local)."""
        import jax
        import jax.numpy as jnp

        flat = jnp.concatenate([jnp.ravel(g) for g in jax.tree_util.tree_leaves(tree)])
        return jnp.sum(flat[self.plus]) - jnp.sum(flat[self.minus])

    def gradient(self, grads: Any) -> Any:
        """The per-step check of the gradient."""
        return self.project(grads)

    def flag(self, losses: Any, checks: Any, weights: Any, probe: Any) -> Any:
        """True when any check is impossible in real numbers: the steps' gradient projections,
        the epoch's final weights projected, the probe loss (and the steps' losses when
        computed anyway).  One vectorised comparison, then one more for the bit."""
        import jax.numpy as jnp

        w = self.project(weights)[None]
        below = LOSS_SLACK if self.nonnegative else self.loss_bound
        losses = jnp.concatenate([losses, probe[None]]) if self.check_loss else probe[None]
        margins = jnp.concatenate(
            [
                checks - self.bound,
                -checks - self.bound,
                w - self.bound,
                -w - self.bound,
                losses - self.loss_bound,
                -losses - below,
            ]
        )
        return jnp.sum((margins > 0).astype(jnp.int32)) > 0

    def describe(self) -> str:
        neg = "below 0 or " if self.nonnegative else ""
        return (
            f"the loss {neg}past {self.loss_bound:.3g}, or a projection of a gradient or of the "
            f"weights past {self.bound:.3g}: values real numbers cannot give"
        )


def nonnegative(loss_fn: Any) -> bool:
    """Whether ``loss_fn`` cannot be negative in real numbers: torch's MSE, BCE-with-logits and
    cross entropy, with non-negative weights (a user function: unknown, so ``False``)."""
    import torch.nn as nn

    if not isinstance(loss_fn, (nn.MSELoss, nn.BCEWithLogitsLoss, nn.CrossEntropyLoss)):
        return False
    for name in ("weight", "pos_weight"):
        w = getattr(loss_fn, name, None)
        if w is not None and bool((w < 0).any()):
            return False
    return True


SENTINELS = ("steps", "epoch")


def for_fit(mode: Any, sp: Any, train_struct: Any, loss_fn: Any, revealed: bool) -> Any:
    """The sentinel of a fit under MPC, or ``None``: ``mode`` ``"steps"`` (every step's loss
    checked), ``"epoch"`` (the probe loss once per epoch; every step's when it is revealed
    anyway), ``True`` (the default: ``"steps"`` for ``MSELoss`` and ``BCEWithLogitsLoss``,
    whose losses MPC computes for a few element-wise operations, ``"epoch"`` for the others)
    or ``False``."""
    import torch.nn as nn

    if mode is False or sp.fixed_point is None:
        return None
    if mode is True:
        cheap = isinstance(loss_fn, (nn.MSELoss, nn.BCEWithLogitsLoss))
        mode = "steps" if cheap else "epoch"
    n = sum(int(np.prod(a.shape)) for a in train_struct.values())
    return Sentinel.of(*sp.fixed_point, n, loss_fn, check_loss=mode == "steps" or revealed)

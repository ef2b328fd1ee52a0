"""What calibration records per module: magnitudes, products, divisors, rounding, masks.

Numbers here do not depend on the field or the fraction bits: they are measured once, and
:mod:`.report` judges them under any setting (``limits``).  The one setting-dependent
quantity, the rounding error of each value, is kept for every fraction-bits count 0..63 at
once (from a histogram of the values' binary exponents), so a report can be re-judged under
another field or fraction bits without running the model again.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ..runners.config import fixed_point_product_limit, fixed_point_range

# A value at least this large (or inf) is a masking stand-in (finfo.min, -inf): SPU's encoding
# clamps it to the largest encodable value instead of wrapping (the graph converter replaces
# constants this large by -100 for the same reason: converters/fx/program.py HUGE).  Such
# values are right under MPC as long as they only pass through additions of one such value,
# max/min/select, reshapes and exp; anywhere else (a product, a sum of several) they wrap.
MASK_MAGNITUDE = 1e30

# Primitives that multiply two fixed-point values: SPU computes the exact product with 2f
# fraction bits, then truncates; the product (a matmul's accumulated sums) must fit
# (fixed_point_range).  A division a / b is a * (1 / b): its result is such a product.
PRODUCTS = frozenset({"mul", "dot_general", "conv_general_dilated", "div", "integer_pow", "square"})

# Primitives that carry a saturated mask value through correctly under MPC.
MASK_SAFE = frozenset(
    {
        "add",
        "sub",
        "add_any",
        "max",
        "min",
        "select_n",
        "clamp",
        "neg",
        "broadcast_in_dim",
        "reshape",
        "transpose",
        "slice",
        "dynamic_slice",
        "dynamic_update_slice",
        "gather",
        "concatenate",
        "pad",
        "squeeze",
        "expand_dims",
        "rev",
        "convert_element_type",
        "copy",
        "copy_p",
        "stop_gradient",
        "reduce_max",
        "reduce_min",
        "sort",
    }
)

# A tensor is represented well enough when its relative rounding error (the norm of what
# rounding to 2**-f changes, over the tensor's norm) is at most this.
PRECISION_TOLERANCE = 1e-2
_F = np.arange(64)  # fraction bits 0..63: every setting of both fields


def limits(field: str, fraction_bits: int) -> tuple[float, float, float]:
    """``(product_limit, value_limit, resolution)`` of a field and fraction bits.

    The one definition is in :mod:`ppml_torch.runners.config`: ``product_limit`` is
    :func:`~ppml_torch.runners.config.fixed_point_product_limit` (``2**(k-2-2f)``, measured:
    FM64 f=18 ``x*x`` right at 7.7e7, wrong at 1.34e8), ``value_limit`` and ``resolution`` are
    :func:`~ppml_torch.runners.config.fixed_point_range` (``2**(k-2-f)``, where SPU's encoding
    clamps a value: FM64 f=18 1.76e13, the "inputs of 1e14 come back as 1.76e13" of issue 10).
    """
    value, resolution = fixed_point_range(field, fraction_bits)
    return fixed_point_product_limit(field, fraction_bits), value, resolution


@dataclasses.dataclass
class TensorStats:
    max_abs: float  # largest finite magnitude below MASK_MAGNITUDE
    saturated: int  # elements of mask magnitude (>= 1e30 or inf)
    nan: int
    rel_error: np.ndarray  # (64,) relative rounding error with f fraction bits
    zeroed: np.ndarray  # (64,) nonzero elements below 2**-f (they become 0)
    smallest: float  # the smallest magnitude that matters (see analyse)
    size: int = 0
    saturated_mask: np.ndarray | None = None  # elementwise, kept for add/sub checks


def analyse(value: Any) -> TensorStats:
    """Magnitudes and rounding errors of one float array.

    ``smallest``: the magnitude below which the elements together carry less than
    ``PRECISION_TOLERANCE**2`` of the tensor's squared norm (so dropping them changes it by
    less than 1%); values below it may become 0 without harm, values above it matter.
    """
    a = np.asarray(value, dtype=np.float64).ravel()
    nan = np.isnan(a)
    mag = np.abs(a)
    sat = ~nan & (mag >= MASK_MAGNITUDE)
    ok = ~nan & ~sat
    m = mag[ok]
    max_abs = float(m.max()) if m.size else 0.0
    nz = m[m > 0]
    rel = np.zeros(64)
    zeroed = np.zeros(64, dtype=np.int64)
    smallest = math.inf
    if nz.size:
        e = np.clip(np.floor(np.log2(nz)).astype(np.int64), -400, 400)  # 2**e <= |v| < 2**(e+1)
        lo = int(e.min())
        cnt = np.bincount(e - lo)
        s2 = np.bincount(e - lo, weights=nz * nz)
        total = float(s2.sum())
        cum_cnt, cum_s2 = np.cumsum(cnt), np.cumsum(s2)
        last = -_F - 1 - lo  # index of the last bin below 2**-f, per f
        idx = np.clip(last, 0, len(cnt) - 1)
        lost_cnt = np.where(last >= 0, cum_cnt[idx], 0)
        lost_s2 = np.where(last >= 0, cum_s2[idx], 0.0)
        kept = nz.size - lost_cnt
        # lost values are wrong by themselves; kept ones by a rounding step, rms 2**-f / sqrt(12)
        err2 = lost_s2 + kept * 4.0 ** (-_F.astype(np.float64)) / 12.0
        rel = np.sqrt(err2 / total) if total > 0 else rel
        zeroed = lost_cnt.astype(np.int64)
        first = int(np.argmax(cum_s2 > PRECISION_TOLERANCE**2 * total))
        smallest = float(2.0 ** (first + lo))
    return TensorStats(
        max_abs,
        int(sat.sum()),
        int(nan.sum()),
        rel,
        zeroed,
        smallest,
        int(a.size),
        sat.reshape(np.shape(value)) if sat.any() else None,
    )


@dataclasses.dataclass
class ModuleStats:
    """Everything recorded for one module (or the inputs) over the sample.

    ``max_value``: the largest magnitude of any of its values (masks excluded);
    ``max_product``: the largest magnitude of a product before truncation (``PRODUCTS``);
    ``min_divisor``: the smallest magnitude of a divisor (``div``, ``rsqrt``, negative powers);
    ``negative``: arguments outside the domain of ``sqrt``/``rsqrt``/``log``/``log1p``;
    ``nan``: NaNs made here from non-NaN inputs (plaintext; MPC gives an ordinary number);
    ``saturated``: mask-magnitude elements passed through; ``saturated_misuse``: ones that
    reach a product or a sum of several, where MPC wraps them;
    ``min_exp_arg``: the smallest argument of ``exp`` (SPU's Taylor exp fails below -2**iters);
    ``function_args``: per approximated function (``sqrt``, ``rsqrt``, ``log``, ``divisor``:
    a secret divisor), the largest argument and the operation that took it (SPU's
    approximations are right only below a limit set by the fraction bits,
    :func:`~ppml_torch.runners.config.function_input_limit`);
    ``rel_error``/``zeroed``: per fraction-bits count, the worst relative rounding error of one
    of its tensors, and how many nonzero values fall below the resolution;
    ``smallest``: the smallest magnitude that matters in any of its tensors.
    """

    path: str
    kind: str = ""
    equations: int = 0
    elements: int = 0
    max_value: float = 0.0
    value_op: str = ""
    max_product: float = 0.0
    product_op: str = ""
    min_divisor: float = math.inf
    divisor_op: str = ""
    negative: int = 0
    negative_op: str = ""
    nan: int = 0
    nan_op: str = ""
    saturated: int = 0
    saturated_misuse: int = 0
    misuse_op: str = ""
    min_exp_arg: float = math.inf
    function_args: dict[str, tuple[float, str]] = dataclasses.field(default_factory=dict)
    rel_error: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(64))
    error_op: list[str] = dataclasses.field(default_factory=lambda: [""] * 64)
    zeroed: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(64, np.int64))
    smallest: float = math.inf

    @property
    def label(self) -> str:
        return self.path or "(root)"

    def add_tensor(self, t: TensorStats, op: str, *, product: bool) -> None:
        self.elements += t.size
        if t.max_abs > self.max_value:
            self.max_value, self.value_op = t.max_abs, op
        if product and t.max_abs > self.max_product:
            self.max_product, self.product_op = t.max_abs, op
        worse = t.rel_error > self.rel_error
        self.rel_error = np.where(worse, t.rel_error, self.rel_error)
        for f in np.nonzero(worse)[0]:
            self.error_op[int(f)] = op
        self.zeroed = self.zeroed + t.zeroed
        self.smallest = min(self.smallest, t.smallest)
        self.saturated += t.saturated

    def misuse(self, count: int, op: str) -> None:
        if count and not self.saturated_misuse:
            self.misuse_op = op
        self.saturated_misuse += count

    def divisor(self, value: Any, op: str) -> None:
        a = np.abs(np.asarray(value, dtype=np.float64))
        a = a[~np.isnan(a)]
        if a.size and float(a.min()) < self.min_divisor:
            self.min_divisor, self.divisor_op = float(a.min()), op

    def dividend(self, value: Any, op: str) -> None:
        """A dividend of a secret divisor: SPU multiplies it by a normalised reciprocal of up to
        twice the divisor's inverse, so it counts as a product of twice its size (measured on
        FM64/18, 4,096 elements each, SEMI2K and ABY3: ``a / b`` for b = 0.7, 3, 100 never wrong
        up to ``a`` = 0.6 x the product limit, wrong for 3-4% of the elements at 0.75 x and for
        7-15% at 0.9 x: wrapped by ``2**(k-2-f)``; the shares decide which elements)."""
        a = np.abs(np.asarray(value, dtype=np.float64))
        a = a[np.isfinite(a) & (a < MASK_MAGNITUDE)]
        if a.size and 2 * float(a.max()) > self.max_product:
            self.max_product = 2 * float(a.max())
            self.product_op = (
                f"{op}, counted twice (SPU's division is right up to half the product limit)"
            )

    def function_arg(self, function: str, value: Any, op: str) -> None:
        a = np.abs(np.asarray(value, dtype=np.float64))
        a = a[np.isfinite(a) & (a < MASK_MAGNITUDE)]
        if a.size and float(a.max()) > self.function_args.get(function, (0.0, ""))[0]:
            self.function_args[function] = (float(a.max()), op)

    def domain(self, count: int, op: str) -> None:
        if count and not self.negative:
            self.negative_op = op
        self.negative += count

    def nans(self, count: int, op: str) -> None:
        if count and not self.nan:
            self.nan_op = op
        self.nan += count

"""Dropout masks drawn from a public seed, the same on ``cpu`` and under MPC, on both routes.

A training-mode dropout (``nn.Dropout``, ``F.dropout``, attention dropout) multiplies its input
by a random mask.  Here every mask comes from a **mask stream**: a public key (two uint32) and
a counter-based generator, Threefry-2x32 (20 rounds, the generator of ``jax.random``), run
inside the program on public values.  ``fit`` makes one key per epoch from its ``seed`` and
one per step from it; each dropout call of a step takes the next site number, and its mask is
``threefry(step key, (counter, site))`` (four 16-bit draws per counter) compared with the
rate.  The same seed therefore
gives the same masks in every session (plaintext ``cpu``, SPU under any protocol and field,
SecretFlow), on the graph route (the ``aten.native_dropout`` and attention lowerings) and on
the Flax route (Flax's ``nn.Dropout`` calls, intercepted inside :func:`drawn_from`).

**What a mask discloses.** Nothing about data or weights: it is a function of the public
seed, the epoch, the step and the shape only.  Every party can compute it, so under MPC the
masked product is a secret times a public value (local work, no communication) and the
mask-drawing costs no communication at all (``bench/bench_finetune.py`` measures it against
SPU's own ``rng_uniform``, which also draws a public mask but repeats it on every call and
cannot be reproduced in plaintext).

**Why not ``jax.random``.** Under SPU an integer left shift keeps the bits above bit 31 (SPU
holds a uint32 in a 64-bit ring and reveals it modulo 2**32), so JAX's own Threefry gives
other numbers under SPU than on ``cpu`` (measured: every output word differs), and its
``uniform`` reinterprets integer bits as an IEEE float, which fixed point cannot do.  The
Threefry here masks each shifted word back to 32 bits (:func:`threefry2x32`; equal to JAX's
``threefry_2x32`` bit for bit, checked in the tests) and compares integers, never floats.

A dropout outside a stream (``predict`` on a module in training mode, a converted model
applied by hand) is a one-line :class:`DropoutError`: masks are drawn only where asked for.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .errors import PpmlError

__all__ = [
    "DropoutError",
    "MaskStream",
    "active",
    "apply",
    "draw",
    "drawn_from",
    "epoch_key",
    "require",
    "sites_of",
    "step_key",
    "threefry2x32",
]

U = np.uint32
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))  # Threefry-2x32's rotation constants
_PARITY = 0x1BD11BDA
_STEP_TAG = 0x5EED  # the second counter word of a step key (keeps it apart from masks)
# a mask compares 16 random bits with the rate (rates are multiples of 2**-16): each Threefry
# call gives two 32-bit words, four masks' bits, a quarter of the public work of one per mask
RATE_BITS = 16

# ConvertedModel.extras key: the training-mode dropout sites of a converted model, as
# ((where, p), ...) in the order the program calls them (both routes fill it)
EXTRA = "dropout"


class DropoutError(PpmlError, ValueError):
    """A training-mode dropout where no mask stream is drawn (one line: where, and the fix)."""


def _rotl(x: Any, d: int) -> Any:
    """``x`` rotated left by ``d`` bits, exact under SPU: each part is masked to its bits
    before it is shifted, so nothing above bit 31 survives (see the module docstring)."""
    low = x & U((1 << (32 - d)) - 1)
    high = (x >> U(32 - d)) & U((1 << d) - 1)
    return (low << U(d)) | high


def _group(x0: Any, x1: Any, rotations: tuple[int, ...], k_a: Any, k_b: Any, i: Any) -> Any:
    """Four Threefry rounds, then the key injection of group ``i`` (``k_a``, ``k_b``, ``i + 1``)."""
    for r in rotations:
        x0 = x0 + x1
        x1 = _rotl(x1, r) ^ x0
    return x0 + k_a, x1 + k_b + i + U(1)


def threefry2x32(key: tuple[Any, Any], x0: Any, x1: Any) -> tuple[Any, Any]:
    """Threefry-2x32 (20 rounds) of the counter words ``(x0, x1)`` under ``key``: numpy or
    JAX uint32 arrays.  Only the low 32 bits of the result are defined under SPU (additions
    carry into the ring's upper bits); :func:`_bits` reads them through a mask.

    Traced (JAX), the five groups of four rounds run as a loop, not unrolled: XLA's CPU compiler
    otherwise copies the whole generator into every consumer of a mask (a GPT-2 step's epoch
    program took minutes to compile on ``cpu``); SPU runs the loop on public values.
    """
    k0, k1 = key
    k2 = k0 ^ k1 ^ U(_PARITY)
    x0, x1 = x0 + k0, x1 + k1
    if isinstance(x0, np.ndarray) or np.isscalar(x0):  # plaintext (epoch keys): unrolled
        ks = (k0, k1, k2)
        for i in range(5):
            x0, x1 = _group(x0, x1, _ROTATIONS[i % 2], ks[(i + 1) % 3], ks[(i + 2) % 3], U(i))
        return x0, x1
    from jax import lax

    def two_groups(j: Any, carry: tuple[Any, ...]) -> tuple[Any, ...]:
        # groups 2j and 2j+1; (a, b, c) = the key words (2j+1, 2j+2, 2j) mod 3
        y0, y1, a, b, c = carry
        i = (j * 2).astype(U)
        y0, y1 = _group(y0, y1, _ROTATIONS[0], a, b, i)
        y0, y1 = _group(y0, y1, _ROTATIONS[1], b, c, i + U(1))
        return y0, y1, c, a, b

    x0, x1, a, b, _ = lax.fori_loop(0, 2, two_groups, (x0, x1, k1, k2, k0))
    return _group(x0, x1, _ROTATIONS[0], a, b, U(4))


def epoch_key(seed: int, epoch: int) -> np.ndarray:
    """The public key of one epoch of a ``fit`` with ``seed``: ``uint32[2]`` (plaintext)."""
    with np.errstate(over="ignore"):
        k = (U(seed & 0xFFFFFFFF), U((seed >> 32) & 0xFFFFFFFF))
        a, b = threefry2x32(k, np.asarray(epoch, U), np.asarray(_STEP_TAG, U))
    return np.array([a, b], U)


def step_key(key: Any, step: Any) -> Any:
    """The key of step ``step`` (an int or a traced uint32) of the epoch ``key``."""
    import jax.numpy as jnp

    # only the words' low 32 bits are defined under SPU; every use of a key reads only those
    a, b = threefry2x32((key[0], key[1]), jnp.asarray(step, U), jnp.asarray(_STEP_TAG, U))
    return jnp.stack([a, b])


def _bits(key: Any, shape: tuple[int, ...], site: int) -> Any:
    """``RATE_BITS`` (16) uniform random bits per element of ``shape`` for dropout site
    ``site``: Threefry of the counters ``(i, site)``, each output word cut in two halves."""
    import jax.numpy as jnp
    from jax import lax

    n = int(np.prod(shape)) if shape else 1
    calls = -(-n // 4)  # four 16-bit draws per call
    x0, x1 = threefry2x32((key[0], key[1]), lax.iota(U, calls), jnp.full((calls,), site, U))
    low = U((1 << RATE_BITS) - 1)
    halves = [x0 & low, (x0 >> U(16)) & low, x1 & low, (x1 >> U(16)) & low]
    return jnp.concatenate(halves)[:n].reshape(shape)


class MaskStream:
    """The masks of one step: a public ``key`` and the next site number."""

    def __init__(self, key: Any):
        self.key = key
        self.site = 0

    def mask(self, shape: Sequence[int], p: float, dtype: Any) -> Any:
        """``1 / (1 - p)`` where kept, ``0`` where dropped (public), for the next site."""
        import jax.numpy as jnp

        threshold = U(min(round(float(p) * (1 << RATE_BITS)), (1 << RATE_BITS) - 1))
        keep = _bits(self.key, tuple(int(d) for d in shape), self.site) >= threshold
        self.site += 1
        return jnp.where(keep, np.asarray(1.0 / (1.0 - float(p)), dtype), np.asarray(0, dtype))


_STREAM: contextvars.ContextVar[MaskStream | None] = contextvars.ContextVar(
    "ppml_torch_dropout_stream", default=None
)


def active() -> MaskStream | None:
    """The mask stream of the program being traced, or ``None`` outside :func:`drawn_from`."""
    return _STREAM.get()


def require(p: float, where: str) -> MaskStream:
    """The active stream; a one-line :class:`DropoutError` naming ``where`` if there is none."""
    stream = _STREAM.get()
    if stream is None:
        raise DropoutError(
            f"dropout with p={p} in training mode ({where}) needs masks drawn from a seed, and "
            "nothing draws them here: ppml_torch.fit does (seed=); to run without dropout, call "
            "module.eval() first"
        )
    return stream


def draw(shape: Sequence[int], p: float, dtype: Any, where: str = "a converted model") -> Any:
    """The next mask of the active stream: ``1 / (1 - p)`` where kept, ``0`` where dropped
    (public; a one-line :class:`DropoutError` outside a stream)."""
    import jax.numpy as jnp

    if p >= 1:
        return jnp.zeros(tuple(shape), dtype)
    return require(p, where).mask(shape, p, dtype)


def apply(x: Any, p: float, where: str = "a converted model") -> Any:
    """``x`` times the next mask of the active stream (dropout with rate ``p``)."""
    import jax.numpy as jnp

    if not p:
        return x
    return x * draw(jnp.shape(x), p, jnp.result_type(x), where)


@contextlib.contextmanager
def drawn_from(key: Any) -> Iterator[MaskStream]:
    """Inside this block, dropout (graph lowerings and Flax's ``nn.Dropout``) draws its masks
    from ``key`` (a public ``uint32[2]``, possibly traced), site after site."""
    stream = MaskStream(key)
    token = _STREAM.set(stream)
    try:
        with _flax_dropout():
            yield stream
    finally:
        _STREAM.reset(token)


@contextlib.contextmanager
def _flax_dropout() -> Iterator[None]:
    """Flax's ``nn.Dropout`` calls take their masks from the active stream (Flax's own
    interceptor API, :func:`flax.linen.intercept_methods`); nothing else is changed."""
    if "flax.linen" not in sys.modules:  # no Flax model can be running
        yield
        return
    import flax.linen as nn

    def intercept(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
        module = context.module
        if not (isinstance(module, nn.Dropout) and context.method_name == "__call__"):
            return next_fun(*args, **kwargs)
        inputs = args[0] if args else kwargs["inputs"]
        deterministic = args[1] if len(args) > 1 else kwargs.get("deterministic")
        deterministic = nn.merge_param("deterministic", module.deterministic, deterministic)
        if deterministic or module.rate == 0:
            return inputs
        shape = list(inputs.shape)
        for d in module.broadcast_dims:  # one mask along the broadcast dimensions
            shape[d] = 1
        return inputs * require(module.rate, "a Flax nn.Dropout").mask(
            shape, module.rate, inputs.dtype
        )

    with nn.intercept_methods(intercept):
        yield


def sites_of(model: Any) -> tuple[tuple[str, float], ...]:
    """The training-mode dropout sites of a converted model: ``((where, p), ...)``."""
    return tuple(getattr(model, "extras", {}).get(EXTRA, ()))

"""A torch optimizer the user built, mapped to an optax transformation over converted params.

:func:`from_torch` reads ``torch.optim.SGD``, ``Adam`` or ``AdamW`` and their param groups and
returns a :class:`TorchOptimizer`: an optax ``GradientTransformation`` (``init``/``update``)
over the params pytree of a :class:`~ppml_torch.model.ConvertedModel`, doing per group what
``optimizer.step()`` would do:

* **SGD**: ``momentum``, ``dampening``, ``weight_decay``, ``nesterov`` (torch's first step puts
  the gradient itself in the momentum buffer, undampened; optax 0.2.2 has no dampening, so the
  momentum is :func:`torch_momentum` here).
* **Adam**: ``betas``, ``eps``, ``weight_decay`` (added to the gradient),
  ``decoupled_weight_decay``; **AdamW**: decoupled weight decay ``p *= 1 - lr * wd``.
* **Param groups**: each group keeps its own hyper-parameters (per-group learning rates).
  Parameters with ``requires_grad=False`` and parameters of the module in no group stay
  fixed, as in torch; so do buffers (BatchNorm statistics, ...), which no optimizer sees.

Which leaf of the params pytree is which torch parameter (``target``):

* graph route (``ppml_torch.convert``): ``params`` is a flat dict keyed by ``state_dict``
  names; pass the ``ConvertedModel`` (tied weights then resolve to the canonical key the
  program reads) or nothing;
* Flax route (``ppml_torch.to_flax``): pass the ``ConvertedModel``; its
  ``extras["weight_map"]`` says where each torch name lives in ``{"params": ...}``
  (transposed kernels need nothing: every mapped update is elementwise);
* anything else: a mapping torch parameter name -> path in the pytree (a tuple of keys, or
  one key for a flat dict).

Refused with one line (:class:`OptimizerMappingError`) before any work: other optimizer
classes (subclasses included: they may override ``step``), ``maximize``, ``amsgrad``,
``differentiable=True``, tensor learning rates/betas/weight decays, an attached LR scheduler
(fit trains with constant learning rates), an optimizer that already has state (its moments
would be lost), parameters that are not the module's.  ``foreach``, ``fused`` and
``capturable`` only choose torch's kernels (same arithmetic), so they are accepted.

One difference from torch: torch skips a parameter whose ``.grad`` is ``None`` (no weight
decay, no momentum); here every trained parameter gets a gradient (zeros if unused), so
weight decay and momentum still move it.

**Adam under fixed point** (``fixed_point=(field, fraction_bits)``, e.g. ``("FM64", 18)``): the
plain mapping underflows (see ``docs/training.md``, "Adam under fixed point"), so Adam and
AdamW then keep their moments rescaled (``s*m`` and ``s**2*v`` with ``s`` a power of two chosen
from the fraction bits), which is the same arithmetic in real numbers; one warning names the
choice.  SGD needs no change.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ppml_torch.errors import PpmlError

if TYPE_CHECKING:
    import torch

    from ppml_torch.model import ConvertedModel

Path = tuple[Any, ...]
FROZEN = "frozen"

__all__ = [
    "FROZEN",
    "MpcAdamWarning",
    "OptimizerMappingError",
    "TorchOptimizer",
    "adam_moment_scale",
    "from_torch",
    "param_paths",
    "torch_adam",
    "torch_momentum",
]


class OptimizerMappingError(PpmlError, ValueError):
    """The torch optimizer (or a setting of it) has no mapping; the message says what to do."""


class MpcAdamWarning(UserWarning):
    """Adam under fixed point runs in its MPC-safe form (rescaled moments)."""


# --- the transforms torch has and optax 0.2.2 lacks -----------------------------------------


class MomentumState(NamedTuple):
    count: jax.Array  # steps taken (int32 scalar)
    buf: Any  # torch's momentum_buffer, per leaf


def torch_momentum(
    momentum: float, dampening: float = 0.0, nesterov: bool = False
) -> optax.GradientTransformation:
    """torch.optim.SGD's momentum on (weight-decayed) gradients, learning rate not applied.

    ``buf = g`` on the first step (undampened, as torch), then
    ``buf = momentum * buf + (1 - dampening) * g``; the update is ``g + momentum * buf``
    with ``nesterov``, else ``buf``.
    """

    def init(params: Any) -> MomentumState:
        return MomentumState(
            jnp.zeros([], jnp.int32), jax.tree_util.tree_map(jnp.zeros_like, params)
        )

    def update(updates: Any, state: MomentumState, params: Any = None) -> tuple[Any, MomentumState]:
        del params
        first = state.count == 0
        buf = jax.tree_util.tree_map(
            lambda g, b: jnp.where(first, g, momentum * b + (1.0 - dampening) * g),
            updates,
            state.buf,
        )
        if nesterov:
            out = jax.tree_util.tree_map(lambda g, b: g + momentum * b, updates, buf)
        else:
            out = buf
        return out, MomentumState(state.count + 1, buf)

    return optax.GradientTransformation(init, update)


class AdamState(NamedTuple):
    beta1_pow: jax.Array  # beta1 ** step (float32 scalar; products, no pow under MPC)
    beta2_pow: jax.Array
    mu: Any  # scale * m
    nu: Any  # scale**2 * v


def torch_adam(
    b1: float, b2: float, eps: float, *, scale: float = 1.0, eps_floor: float = 0.0
) -> optax.GradientTransformation:
    """torch's Adam direction ``(m / bc1) / (sqrt(v) / sqrt(bc2) + eps)``, learning rate not applied.

    ``scale`` keeps the moments as ``s*m`` and ``s**2*v`` (``s = scale``) and divides by
    ``sqrt(s**2 v) / sqrt(bc2) + s*eps``: the same number in real arithmetic, but under fixed
    point ``(1 - b2) * (s*g)**2`` stays representable where ``(1 - b2) * g**2`` underflows.
    ``eps_floor`` raises ``s*eps`` to at least that value (under fixed point torch's
    ``eps=1e-8`` rounds to 0, and SPU's ``sqrt`` of a ``v`` of a few resolution steps is 0).  ``scale=1, eps_floor=0`` is torch's arithmetic, operation for
    operation.  Bias corrections use running products ``b**t`` (no ``pow``, which fixed
    point would approximate); the square root is taken before the bias correction, as torch
    does, which keeps its argument small in early steps.
    """
    # (1 - b2) * (s g)^2 computed as (c g)^2 with c = s * sqrt(1 - b2): one product less to
    # truncate under fixed point.
    c2 = scale * math.sqrt(1.0 - b2)
    eps_s = max(eps * scale, eps_floor)
    torch_form = scale == 1.0

    def init(params: Any) -> AdamState:
        zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, params)  # noqa: E731
        one = jnp.ones([], jnp.float32)
        return AdamState(one, one, zeros(), zeros())

    def update(updates: Any, state: AdamState, params: Any = None) -> tuple[Any, AdamState]:
        del params
        p1 = state.beta1_pow * b1
        p2 = state.beta2_pow * b2
        if torch_form:
            mu = jax.tree_util.tree_map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, updates)
            nu = jax.tree_util.tree_map(lambda v, g: b2 * v + (1.0 - b2) * g * g, state.nu, updates)
        else:
            mu = jax.tree_util.tree_map(
                lambda m, g: b1 * m + ((1.0 - b1) * scale) * g, state.mu, updates
            )
            nu = jax.tree_util.tree_map(lambda v, g: b2 * v + jnp.square(c2 * g), state.nu, updates)
        bc1 = 1.0 - p1
        sqrt_bc2 = jnp.sqrt(1.0 - p2)
        out = jax.tree_util.tree_map(
            lambda m, v: (m / bc1) / (jnp.sqrt(v) / sqrt_bc2 + eps_s), mu, nu
        )
        return out, AdamState(p1, p2, mu, nu)

    return optax.GradientTransformation(init, update)


def adam_moment_scale(field: str, fraction_bits: int) -> tuple[float, float]:
    """``(scale, eps_floor)`` of the MPC-safe Adam for a fixed-point setting.

    Both ends of the gradient range matter (docs/training.md, "Adam under fixed point"):
    ``s**2 v`` (up to ``(s*g)**2``) must stay inside SPU's ``sqrt`` range (measured: right up
    to 1e5 on FM64, 0 from 2e5; right up to 1e7 on FM128, 0 at 1e8), while
    ``(1 - b2) (s*g)**2`` must be many resolution steps for small gradients.  Measured
    choice: ``s = 2**8`` on FM64 (18 fraction bits; gradients of about 1e-3 to 1 in root
    mean square once ``v`` has converged), ``s = 2**10`` on FM128 (26 bits; about 4e-5 to 3).
    Other fraction bits: ``2**((bits - 2) // 2)`` on FM64, ``2**((bits - 6) // 2)`` on FM128.
    ``eps_floor``: on FM64 ``sqrt(32)`` resolution steps (0.011): SPU's ``sqrt`` returns 0
    for inputs of a few steps (and a truncation error can make ``v`` one step negative), so
    a parameter whose ``v`` is that small would see ``m`` divided by ``eps`` alone; 32 steps
    is where it is accurate to 1%.  In gradient units that is ``0.011 / s`` = 4e-5.  On FM128
    one step is enough (measured; ``sqrt(32)`` steps there cost accuracy).
    """
    if field.upper() == "FM128":
        return float(2 ** ((fraction_bits - 6) // 2)), 2.0**-fraction_bits
    return float(2 ** ((fraction_bits - 2) // 2)), math.sqrt(32.0 * 2.0**-fraction_bits)


# --- the mapping ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TorchOptimizer:
    """A torch optimizer as an optax transformation over a converted model's params.

    Use ``init(params)`` / ``update(grads, state, params)`` as with any optax transformation
    (``params`` is required: weight decay reads it), or ``step`` for both plus
    ``optax.apply_updates``.

    Attributes:
      tx: the optax transformation (``optax.multi_transform``: one chain per param group,
        ``optax.set_to_zero`` on frozen leaves).
      kind: ``"SGD"``, ``"Adam"`` or ``"AdamW"``.
      groups: per group, its hyper-parameters and the torch names it trains.
      frozen: torch parameter names that stay fixed (``requires_grad=False`` or in no group).
      paths: torch name -> path of its leaf in the params pytree (trained names only).
      fixed_point: ``(field, fraction_bits)`` the transform was built for, or ``None``.
      variant: what was changed for fixed point (``""`` if nothing).
    """

    tx: optax.GradientTransformation
    kind: str
    groups: tuple[Mapping[str, Any], ...]
    frozen: tuple[str, ...]
    paths: Mapping[str, Path]
    fixed_point: tuple[str, int] | None
    variant: str
    labels: Callable[[Any], Any]

    def init(self, params: Any) -> optax.OptState:
        return self.tx.init(params)

    def update(self, grads: Any, state: optax.OptState, params: Any) -> tuple[Any, Any]:
        return self.tx.update(grads, state, params)

    def step(self, params: Any, grads: Any, state: optax.OptState) -> tuple[Any, Any]:
        """One optimizer step: new params and new state (pure; jit- and SPU-able)."""
        updates, state = self.tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state


def param_paths(target: ConvertedModel | Mapping[str, Any] | None) -> Mapping[str, Path] | None:
    """torch parameter name -> path in the params pytree, for a ConvertedModel of either route.

    ``None`` for a graph-route model whose params are keyed by torch names and has no tied
    weights is equivalent to ``{name: (name,)}``.  A mapping is returned with string values
    wrapped into 1-tuples.
    """
    if target is None:
        return None
    from ppml_torch.model import ConvertedModel

    if isinstance(target, ConvertedModel):
        if target.route == "graph":
            out: dict[str, Path] = {k: (k,) for k in target.params}
            for group in target.extras.get("tied", []):
                for name in group:
                    out[name] = (group[0],)
            return out
        wmap = target.extras.get("weight_map")
        if wmap is None:
            raise OptimizerMappingError(
                "from_torch: this flax-route model has no extras['weight_map']; pass a mapping "
                "torch name -> path in params as target"
            )
        out = {k: ("params", *p) for k, p in wmap.pairs.items()}
        for name, partner in wmap.tied.items():
            out[name] = out[partner]
        return out
    if isinstance(target, Mapping):
        return {k: (tuple(v) if isinstance(v, (tuple, list)) else (v,)) for k, v in target.items()}
    raise TypeError(
        f"from_torch: target must be a ConvertedModel, a mapping torch name -> params path, or "
        f"None; got {type(target).__name__}"
    )


_KINDS = ("SGD", "Adam", "AdamW")


def from_torch(
    optimizer: torch.optim.Optimizer,
    module: torch.nn.Module,
    target: ConvertedModel | Mapping[str, Any] | None = None,
    *,
    fixed_point: tuple[str, int] | None = None,
) -> TorchOptimizer:
    """Map ``optimizer`` (built on ``module``'s parameters) to an optax transformation.

    ``target`` says where each torch parameter lives in the params pytree (see the module
    docstring): a ``ConvertedModel`` (either route), a mapping torch name -> path, or ``None``
    (params keyed by torch names).  ``fixed_point=(field, fraction_bits)`` asks for the
    MPC-safe variant (Adam/AdamW: rescaled moments, one :class:`MpcAdamWarning`).
    Raises :class:`OptimizerMappingError` for anything not mapped, before any work.
    """
    import torch

    kind = _check_optimizer(optimizer, torch)
    names = {id(p): n for n, p in module.named_parameters()}
    paths = param_paths(target)

    groups: list[dict[str, Any]] = []
    trained: dict[str, int] = {}
    for gi, group in enumerate(optimizer.param_groups):
        hyper = _check_group(kind, gi, group, torch)
        members = []
        for p in group["params"]:
            if id(p) not in names:
                raise OptimizerMappingError(
                    f"from_torch: param group {gi} holds a tensor of shape {tuple(p.shape)} that "
                    f"is not a parameter of {type(module).__name__}; build the optimizer on "
                    f"module.parameters()"
                )
            if p.requires_grad:
                members.append(names[id(p)])
                trained[names[id(p)]] = gi
        groups.append({**hyper, "names": tuple(members)})
    frozen = tuple(n for n in names.values() if n not in trained)

    resolved: dict[str, Path] = {}
    for name in trained:
        if paths is None:
            resolved[name] = (name,)
        elif name in paths:
            resolved[name] = paths[name]
        else:
            raise OptimizerMappingError(
                f"from_torch: the optimizer trains {name!r} but the params map has no place for "
                f"it; pass the ConvertedModel of this module as target"
            )
    if target is not None and hasattr(target, "params"):
        _check_paths(resolved, target.params)

    variant = ""
    scale, eps_floor = 1.0, 0.0
    if fixed_point is not None:
        field, bits = fixed_point
        if kind in ("Adam", "AdamW"):
            scale, eps_floor = adam_moment_scale(field, bits)
            variant = f"moments kept as s*m and s^2*v with s={scale:g}, s*eps >= {eps_floor:.2g}"
            limits = (
                "it follows torch for gradients of about 1e-3 to 1; FM128 follows it ~1000x closer"
                if field.upper() == "FM64"
                else "it follows torch for gradients of about 4e-5 to 3"
            )
            warnings.warn(
                f"{kind} under fixed point ({field}, {bits} fraction bits) runs its MPC-safe form: "
                f"{variant}; {limits} (the plain form underflows (1-b2)*g^2 and diverges; see "
                f"docs/training.md 'Adam under fixed point')",
                MpcAdamWarning,
                stacklevel=2,
            )

    transforms: dict[str, optax.GradientTransformation] = {FROZEN: optax.set_to_zero()}
    used = set(trained.values())
    for gi, g in enumerate(groups):
        tx_g = _group_tx(kind, g, scale, eps_floor)
        # One vector per group: under MPC every element-wise op of the update (the learning
        # rate's product, momentum, Adam's moments) costs its rounds once per group instead
        # of once per leaf; in plaintext the numbers are the same.
        transforms[f"group{gi}"] = optax.flatten(tx_g) if gi in used else tx_g

    label_of = {path: f"group{gi}" for name, gi in trained.items() for path in [resolved[name]]}

    def labels(params: Any) -> Any:
        flat, treedef = jax.tree_util.tree_flatten_with_path(params)
        found = set()
        out = []
        for keypath, _ in flat:
            path = _plain(keypath)
            out.append(label_of.get(path, FROZEN))
            found.add(path)
        missing = [n for n, p in resolved.items() if p not in found]
        if missing:
            raise OptimizerMappingError(
                f"from_torch: trained parameters {missing[:5]} have no leaf in these params "
                f"(paths {[resolved[n] for n in missing[:3]]}); pass the matching target"
            )
        return jax.tree_util.tree_unflatten(treedef, out)

    tx = optax.multi_transform(transforms, labels)
    return TorchOptimizer(
        tx=tx,
        kind=kind,
        groups=tuple(groups),
        frozen=frozen,
        paths=resolved,
        fixed_point=None if fixed_point is None else (fixed_point[0], int(fixed_point[1])),
        variant=variant,
        labels=labels,
    )


def _group_tx(
    kind: str, g: Mapping[str, Any], scale: float, eps_floor: float
) -> optax.GradientTransformation:
    lr, wd = g["lr"], g["weight_decay"]
    parts: list[optax.GradientTransformation] = []
    if kind == "SGD":
        if wd:
            parts.append(optax.add_decayed_weights(wd))
        if g["momentum"]:
            parts.append(torch_momentum(g["momentum"], g["dampening"], g["nesterov"]))
    else:
        decoupled = kind == "AdamW" or g.get("decoupled_weight_decay", False)
        if wd and not decoupled:
            parts.append(optax.add_decayed_weights(wd))
        b1, b2 = g["betas"]
        parts.append(torch_adam(b1, b2, g["eps"], scale=scale, eps_floor=eps_floor))
        if wd and decoupled:  # p - lr*(adam + wd*p) = p*(1 - lr*wd) - lr*adam, as torch
            parts.append(optax.add_decayed_weights(wd))
    parts.append(optax.scale(-lr))
    return optax.chain(*parts)


def _check_optimizer(optimizer: Any, torch: Any) -> str:
    kinds = {getattr(torch.optim, k): k for k in _KINDS}
    kind = kinds.get(type(optimizer))
    if kind is None:
        raise OptimizerMappingError(
            f"from_torch: {type(optimizer).__module__}.{type(optimizer).__qualname__} has no "
            f"mapping; use torch.optim.SGD, Adam or AdamW"
        )
    if optimizer.state and any(len(s) for s in optimizer.state.values()):
        raise OptimizerMappingError(
            f"from_torch: this {kind} already has state (step() was called); its buffers would "
            f"be lost: build a fresh optimizer"
        )
    return kind


_SGD_KEYS = ("lr", "momentum", "dampening", "weight_decay", "nesterov")
_ADAM_KEYS = ("lr", "betas", "eps", "weight_decay")


def _check_group(kind: str, gi: int, group: Mapping[str, Any], torch: Any) -> dict[str, Any]:
    where = f"from_torch: {kind} param group {gi}"
    if "initial_lr" in group:
        raise OptimizerMappingError(
            f"{where} has an LR scheduler attached ('initial_lr'); schedules are not mapped "
            f"(training uses one constant lr per group): build the optimizer without a scheduler"
        )
    for flag in ("maximize", "amsgrad", "differentiable"):
        if group.get(flag):
            raise OptimizerMappingError(f"{where}: {flag}=True has no mapping; leave it False")
    keys = _SGD_KEYS if kind == "SGD" else _ADAM_KEYS
    hyper: dict[str, Any] = {}
    for k in keys:
        v = group[k]
        vals = v if isinstance(v, (tuple, list)) else (v,)
        if any(isinstance(x, torch.Tensor) for x in vals):
            raise OptimizerMappingError(
                f"{where}: {k} is a tensor; tensor hyper-parameters are not mapped: pass a float"
            )
        hyper[k] = tuple(float(x) for x in vals) if isinstance(v, (tuple, list)) else v
    if kind == "SGD":
        hyper["nesterov"] = bool(hyper["nesterov"])
    else:
        hyper["decoupled_weight_decay"] = bool(group.get("decoupled_weight_decay", False))
    return hyper


def _plain(keypath: tuple) -> Path:
    out = []
    for k in keypath:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                out.append(getattr(k, attr))
                break
        else:
            out.append(k)
    return tuple(out)


def _check_paths(resolved: Mapping[str, Path], params: Any) -> None:
    leaves = {_plain(kp) for kp, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
    missing = [n for n, p in resolved.items() if p not in leaves]
    if missing:
        raise OptimizerMappingError(
            f"from_torch: trained parameters {missing[:5]} have no leaf in the target's params; "
            f"is the target the conversion of this module?"
        )

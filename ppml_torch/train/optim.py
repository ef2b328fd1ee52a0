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
not passed as ``schedule`` (see :mod:`ppml_torch.train.schedules`), a state that does not fit
(:mod:`ppml_torch.train.carry`), parameters that are not the module's.  ``foreach``,
``fused`` and ``capturable`` only choose torch's kernels (same arithmetic), so they are
accepted.

**State.** An optimizer that already stepped is continued, not refused (before: refused, its
moments would have been lost): its per-group step counts shape the transformations (Adam's
bias corrections continue from torch's ``step``; SGD's momentum has no first step) and
:meth:`TorchOptimizer.init` starts from its moments and buffers; :meth:`TorchOptimizer.
write_back` puts a trained state back into the torch optimizer (:mod:`ppml_torch.train.carry`).
``fit`` does both.

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
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import optax

from .optim_base import OptimizerMappingError, Path, plain_path
from .transforms import adam_moment_scale, torch_adam, torch_group, torch_momentum

if TYPE_CHECKING:
    import torch

    from ppml_torch.model import ConvertedModel

    from .carry import TorchStart
    from .schedules import Schedule

FROZEN = "frozen"

__all__ = [
    "FROZEN",
    "MpcAdamWarning",
    "OptimizerMappingError",
    "TorchOptimizer",
    "adam_moment_scale",
    "from_torch",
    "param_paths",
    "plain_path",
    "torch_adam",
    "torch_momentum",
]


class MpcAdamWarning(UserWarning):
    """Adam under fixed point runs in its MPC-safe form (rescaled moments)."""


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
      labels: the param group label of every leaf of a params pytree.
      start: what the torch optimizer carried in (:class:`~ppml_torch.train.carry.TorchStart`:
        per-group step counts, moments and buffers).
      moment_scale: the scale ``s`` Adam keeps its moments at (``s*m``, ``s**2*v``; 1 in
        torch's arithmetic).
      schedule: the LR scheduler's per-step values (:class:`~ppml_torch.train.schedules.
        Schedule`), or ``None`` for constant learning rates.
    """

    tx: optax.GradientTransformation
    kind: str
    groups: tuple[Mapping[str, Any], ...]
    frozen: tuple[str, ...]
    paths: Mapping[str, Path]
    fixed_point: tuple[str, int] | None
    variant: str
    labels: Callable[[Any], Any]
    start: TorchStart
    moment_scale: float = 1.0
    schedule: Schedule | None = None

    def init(
        self, params: Any, to_leaf: Callable[[str, np.ndarray], np.ndarray] | None = None
    ) -> optax.OptState:
        """The optax state to start from: the torch optimizer's own (its moments and buffers
        moved into ``params``' layout by ``to_leaf``; by default the layout must be torch's),
        or a fresh one.  Plaintext: the carried moments are constants here (``fit`` puts them
        into the session as the weights' owner's secret)."""
        from .carry import fill

        state = self.tx.init(params)
        if self.start.fresh:
            return state
        return fill(self, state, params, self.start, to_leaf or _same_layout(self, params))

    def write_back(
        self,
        optimizer: torch.optim.Optimizer,
        module: torch.nn.Module,
        state: optax.OptState,
        params: Any,
        to_torch: Callable[[str, np.ndarray], np.ndarray] | None = None,
    ) -> None:
        """Write a trained ``state`` (over ``params``' layout; ``to_torch`` moves a leaf-layout
        array into torch's) into ``optimizer.state``, as torch would have left it."""
        from .carry import extract, write_back

        moved = extract(self, state, params, self.start, to_torch or _same_layout(self, params))
        write_back(optimizer, module, moved)

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
    schedule: Schedule | None = None,
    start: TorchStart | None = None,
    steps: int | None = None,
) -> TorchOptimizer:
    """Map ``optimizer`` (built on ``module``'s parameters) to an optax transformation.

    ``target`` says where each torch parameter lives in the params pytree (see the module
    docstring): a ``ConvertedModel`` (either route), a mapping torch name -> path, or ``None``
    (params keyed by torch names).  ``fixed_point=(field, fraction_bits)`` asks for the
    MPC-safe variant (Adam/AdamW: rescaled moments, one :class:`MpcAdamWarning`).
    ``schedule``: the per-step learning rates (and cycled momenta) of an LR scheduler
    (:func:`ppml_torch.train.schedules.schedule_of`); required when one is attached.
    ``start``: the optimizer's state as read by :func:`ppml_torch.train.carry.read_torch_state`
    (default: read here).  ``steps``: how many steps the transformation will take (``fit``
    knows): Adam's bias corrections then come from per-step tables of ``beta ** step``
    computed as torch computes them, instead of running products.  Raises :class:`OptimizerMappingError` for anything not mapped,
    before any work.
    """
    import torch

    from .carry import read_torch_state

    kind = _check_optimizer(optimizer, torch)
    names = {id(p): n for n, p in module.named_parameters()}
    paths = param_paths(target)

    groups: list[dict[str, Any]] = []
    trained: dict[str, int] = {}
    for gi, group in enumerate(optimizer.param_groups):
        hyper = _check_group(kind, gi, group, torch, scheduled=schedule is not None)
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
    if start is None:
        start = read_torch_state(optimizer, module, kind, tuple(groups))

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
        tables = {"lr": None, "momentum": None}
        if schedule is not None:
            tables = {"lr": schedule.lr[gi], "momentum": schedule.momentum[gi]}
        tx_g = torch_group(kind, g, scale, eps_floor, start.steps[gi], tables, steps)
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
            path = plain_path(keypath)
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
        start=start,
        moment_scale=scale,
        schedule=schedule,
    )


def _check_optimizer(optimizer: Any, torch: Any) -> str:
    kinds = {getattr(torch.optim, k): k for k in _KINDS}
    kind = kinds.get(type(optimizer))
    if kind is None:
        raise OptimizerMappingError(
            f"from_torch: {type(optimizer).__module__}.{type(optimizer).__qualname__} has no "
            f"mapping; use torch.optim.SGD, Adam or AdamW"
        )
    return kind


_SGD_KEYS = ("lr", "momentum", "dampening", "weight_decay", "nesterov")
_ADAM_KEYS = ("lr", "betas", "eps", "weight_decay")


def _check_group(
    kind: str, gi: int, group: Mapping[str, Any], torch: Any, *, scheduled: bool
) -> dict[str, Any]:
    where = f"from_torch: {kind} param group {gi}"
    if "initial_lr" in group and not scheduled:
        raise OptimizerMappingError(
            f"{where} has an LR scheduler attached ('initial_lr'); pass its per-step values "
            "(schedule=ppml_torch.train.schedules.schedule_of(...); fit(scheduler=...) does it)"
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


def _check_paths(resolved: Mapping[str, Path], params: Any) -> None:
    leaves = {plain_path(kp) for kp, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
    missing = [n for n, p in resolved.items() if p not in leaves]
    if missing:
        raise OptimizerMappingError(
            f"from_torch: trained parameters {missing[:5]} have no leaf in the target's params; "
            f"is the target the conversion of this module?"
        )


def _same_layout(topt: TorchOptimizer, params: Any) -> Callable[[str, np.ndarray], np.ndarray]:
    """The identity between torch's layout and ``params``' (shapes checked): the graph route
    and explicit paths; the Flax route transposes kernels, ``fit`` maps those itself."""
    leaves = {plain_path(kp): leaf for kp, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}

    def same(name: str, array: np.ndarray) -> np.ndarray:
        want = tuple(np.shape(leaves[topt.paths[name]]))
        if tuple(np.shape(array)) != want:
            raise OptimizerMappingError(
                f"from_torch: the optimizer state of {name!r} is {tuple(np.shape(array))} in "
                f"torch's layout but its leaf here is {want}; carry it with ppml_torch.fit, which "
                "maps layouts"
            )
        return np.asarray(array)

    return same

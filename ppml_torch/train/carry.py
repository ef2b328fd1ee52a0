"""A torch optimizer's own state, carried into a training and written back after it.

A torch loop keeps the optimizer's state in the optimizer object: SGD's momentum buffers,
Adam's ``step``, ``exp_avg`` and ``exp_avg_sq`` per parameter.  ``fit`` does the same:

* **in** (:func:`read_torch_state`, before any work): the state is read and checked (one line
  for a state of another optimizer class, of another model or of another parameter order,
  for a param group whose parameters stepped a different number of times); the public part
  (how many steps each group took) shapes the mapped transformations
  (:mod:`ppml_torch.train.optim`), the tensors go into the optax state (:func:`fill`), moved
  into the converted model's layout by ``to_leaf``;
* **out** (:func:`write_back`, after the training): the trained optax state is read back
  (:func:`extract`) and written into ``optimizer.state`` as torch would have left it, so two
  fits of 2 and 3 epochs are one fit of 5 and ``optimizer.state_dict()`` resumes.

Under MPC the state stays secret-shared for the whole training; it is revealed once at the
end, with the weights, to the weights' receiver (docs/fit.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .optim_base import OptimizerMappingError, plain_path

__all__ = ["STATE_KEYS", "TorchStart", "extract", "fill", "read_torch_state", "write_back"]

# the per-parameter state torch keeps, by optimizer class (what is carried)
STATE_KEYS = {
    "SGD": ("momentum_buffer",),
    "Adam": ("step", "exp_avg", "exp_avg_sq"),
    "AdamW": ("step", "exp_avg", "exp_avg_sq"),
}
_MOMENTS = {"exp_avg": "mu", "exp_avg_sq": "nu", "momentum_buffer": "buf"}


@dataclasses.dataclass(frozen=True)
class TorchStart:
    """What a torch optimizer carries into a training (checked).

    Attributes:
      steps: per param group, the steps torch took (Adam's ``step``; SGD: 1 when the momentum
        buffers exist, else 0).  Public: it is the length of the training so far.
      tensors: per trained torch name, ``{"exp_avg": ..., "exp_avg_sq": ...}`` or
        ``{"momentum_buffer": ...}`` as numpy arrays in torch's layout (the secret part).
    """

    steps: tuple[int, ...]
    tensors: Mapping[str, Mapping[str, np.ndarray]]

    @property
    def fresh(self) -> bool:
        return not any(self.steps)


def read_torch_state(
    optimizer: Any, module: Any, kind: str, groups: tuple[Mapping[str, Any], ...]
) -> TorchStart:
    """Read and check ``optimizer.state`` for the trained parameters of ``groups``."""
    err = OptimizerMappingError
    names = {id(p): n for n, p in module.named_parameters()}
    in_groups = {id(p) for g in optimizer.param_groups for p in g["params"]}
    for p in optimizer.state:
        if id(p) not in in_groups:
            raise err(
                f"the {kind}'s state holds a tensor of shape {tuple(p.shape)} that is in none of "
                "its param groups; load a state_dict saved from this optimizer's parameters"
            )
    keys = STATE_KEYS[kind]
    steps: list[int] = []
    tensors: dict[str, dict[str, np.ndarray]] = {}
    for gi, (tgroup, group) in enumerate(zip(optimizer.param_groups, groups, strict=True)):
        trained = {n for n in group["names"]}
        per_param: dict[str, int] = {}
        for p in tgroup["params"]:
            name = names.get(id(p))
            if name not in trained:
                continue  # frozen: torch leaves its state alone, so does fit
            st = optimizer.state.get(p) or {}
            unknown = sorted(set(st) - set(keys))
            if unknown:
                raise err(
                    f"{kind} state of parameter {name!r} has {unknown} (a {kind} keeps "
                    f"{list(keys)}): a state of another optimizer class or of amsgrad=True; "
                    "load a state_dict saved from this optimizer"
                )
            if kind == "SGD":
                buf = st.get("momentum_buffer")
                if not group["momentum"] or buf is None:
                    per_param[name] = 0
                    continue
                tensors[name] = {"momentum_buffer": _tensor(buf, p, name, "momentum_buffer", kind)}
                per_param[name] = 1
                continue
            if not st:
                per_param[name] = 0
                continue
            missing = [k for k in keys if k not in st]
            if missing:
                raise err(
                    f"{kind} state of parameter {name!r} lacks {missing}; load a whole state_dict"
                )
            step = float(st["step"])
            if step != int(step) or step < 0:
                raise err(
                    f"{kind} state of parameter {name!r} has step {step}; a step count is a whole number"
                )
            per_param[name] = int(step)
            tensors[name] = {k: _tensor(st[k], p, name, k, kind) for k in keys if k != "step"}
        counts = set(per_param.values())
        if len(counts) > 1:
            got = ", ".join(f"{n}: {c}" for n, c in list(per_param.items())[:4])
            raise err(
                f"{kind} param group {gi}: its parameters took different numbers of steps ({got}; "
                "torch skips a parameter without a gradient); fit steps a group as one, so give "
                "it parameters that stepped together, or a fresh optimizer"
            )
        steps.append(counts.pop() if counts else 0)
    return TorchStart(tuple(steps), tensors)


def _tensor(value: Any, param: Any, name: str, key: str, kind: str) -> np.ndarray:
    err = OptimizerMappingError
    if not hasattr(value, "shape") or not hasattr(value, "detach"):
        raise err(
            f"{kind} state of parameter {name!r}: {key} is a {type(value).__name__}, not a tensor"
        )
    if tuple(value.shape) != tuple(param.shape):
        raise err(
            f"{kind} state of parameter {name!r}: {key} has shape {tuple(value.shape)} but the "
            f"parameter {tuple(param.shape)}: a state of another model, or of an optimizer whose "
            "parameters were in another order; load the state_dict this optimizer saved"
        )
    if not value.is_floating_point():
        raise err(f"{kind} state of parameter {name!r}: {key} is {value.dtype}, not a float tensor")
    return value.detach().cpu().numpy().astype(np.float32)


# --- the optax state, group by group -------------------------------------------------------


def _group_states(opt_state: Any, n_groups: int) -> list[list[Any]]:
    """Per param group, the chain of states of its transformation (``optax.multi_transform``
    -> ``masked`` -> the ``flatten``ed chain)."""
    out = []
    for gi in range(n_groups):
        inner = opt_state.inner_states[f"group{gi}"].inner_state
        out.append(list(inner) if isinstance(inner, tuple) else [inner])
    return out


def _group_leaves(topt: Any, params: Any, label: str) -> list[tuple[str, Any]]:
    """``(torch name, leaf)`` of one group, in the order ``optax.flatten`` concatenates them."""
    import jax

    labels = jax.tree_util.tree_leaves(topt.labels(params))
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    by_path = {p: n for n, p in topt.paths.items()}
    return [
        (by_path[plain_path(kp)], leaf)
        for (kp, leaf), lab in zip(flat, labels, strict=True)
        if lab == label
    ]


def fill(
    topt: Any,
    opt_state: Any,
    params: Any,
    start: TorchStart,
    to_leaf: Callable[[str, np.ndarray], np.ndarray],
) -> Any:
    """``opt_state`` (of ``topt.tx.init(params)``) with torch's moments and buffers put in.

    ``to_leaf(name, array)`` moves a torch-layout array into the layout of ``name``'s leaf of
    ``params``.  Adam's moments are rescaled as the mapping keeps them (``s*m``, ``s**2*v``).
    """
    from .transforms import AdamState, MomentumState

    if start.fresh:
        return opt_state
    s = topt.moment_scale
    states = _group_states(opt_state, len(topt.groups))
    for gi, chain in enumerate(states):
        if not start.steps[gi]:
            continue
        members = _group_leaves(topt, params, f"group{gi}")
        for i, st in enumerate(chain):
            if isinstance(st, MomentumState):
                buf = _vector([to_leaf(n, start.tensors[n]["momentum_buffer"]) for n, _ in members])
                chain[i] = st._replace(buf=buf)
            elif isinstance(st, AdamState):
                mu = _vector([s * to_leaf(n, start.tensors[n]["exp_avg"]) for n, _ in members])
                nu = _vector(
                    [s * s * to_leaf(n, start.tensors[n]["exp_avg_sq"]) for n, _ in members]
                )
                chain[i] = st._replace(mu=mu, nu=nu)
    return _rebuild(opt_state, states)


def extract(
    topt: Any,
    opt_state: Any,
    params: Any,
    start: TorchStart,
    to_torch: Callable[[str, np.ndarray], np.ndarray],
    steps_taken: int | None = None,
) -> dict[str, dict[str, Any]]:
    """torch's per-parameter state from a trained optax state: ``{name: {key: value}}``
    (``step`` as a number, the rest numpy arrays in torch's layout via ``to_torch``).
    ``steps_taken``: the steps of this training (default: Adam's own count)."""
    from .transforms import AdamState, MomentumState

    s = topt.moment_scale
    out: dict[str, dict[str, Any]] = {}
    for gi, chain in enumerate(_group_states(opt_state, len(topt.groups))):
        members = _group_leaves(topt, params, f"group{gi}")
        for st in chain:
            if isinstance(st, MomentumState):
                for (n, _), b in zip(members, _split(st.buf, members), strict=True):
                    out[n] = {"momentum_buffer": to_torch(n, b)}
            elif isinstance(st, AdamState):
                taken = int(np.asarray(st.count)) if steps_taken is None else steps_taken
                step = start.steps[gi] + taken
                mus, nus = _split(st.mu, members), _split(st.nu, members)
                for (n, _), m, v in zip(members, mus, nus, strict=True):
                    out[n] = {
                        "step": step,
                        "exp_avg": to_torch(n, np.asarray(m) / s),
                        "exp_avg_sq": to_torch(n, np.asarray(v) / (s * s)),
                    }
    return out


def write_back(optimizer: Any, module: Any, state: Mapping[str, Mapping[str, Any]]) -> None:
    """Put ``state`` (from :func:`extract`) into ``optimizer.state``, as torch keeps it."""
    import torch

    params = dict(module.named_parameters())
    for name, entries in state.items():
        p = params[name]
        st = optimizer.state[p]
        for key, value in entries.items():
            if key == "step":
                old = st.get("step")
                dtype = old.dtype if isinstance(old, torch.Tensor) else torch.float32
                st["step"] = torch.tensor(float(value), dtype=dtype)
            else:
                st[key] = torch.from_numpy(np.array(value, np.float32, copy=True)).to(p.dtype)


def _vector(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros((0,), np.float32)
    return np.concatenate([np.asarray(p, np.float32).ravel() for p in parts])


def _split(vector: Any, members: list[tuple[str, Any]]) -> list[np.ndarray]:
    v = np.asarray(vector)
    out, at = [], 0
    for _, leaf in members:
        size = int(np.size(leaf))
        out.append(v[at : at + size].reshape(np.shape(leaf)))
        at += size
    return out


def _rebuild(opt_state: Any, states: list[list[Any]]) -> Any:
    inner = dict(opt_state.inner_states)
    for gi, chain in enumerate(states):
        label = f"group{gi}"
        old = inner[label].inner_state
        new = tuple(chain) if isinstance(old, tuple) else chain[0]
        inner[label] = inner[label]._replace(inner_state=new)
    return opt_state._replace(inner_states=inner)

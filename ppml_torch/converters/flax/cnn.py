"""torch ``nn.Sequential`` CNN -> ``ppml_torch.models.flax_cnn.CNN``.

Accepted layers, in ``Sequential`` order: ``Conv1d``/``Conv2d`` (zero padding given as
numbers, ``groups=1``), ``BatchNorm1d``/``BatchNorm2d`` (affine, running statistics, eval
mode), activations (ReLU, Sigmoid, Tanh, GELU, SiLU), ``MaxPool1d``/``MaxPool2d`` (no
indices), ``AvgPool1d``/``AvgPool2d``, ``AdaptiveAvgPool1d``/``2d`` to size 1, ``Flatten``,
``Linear``; ``Dropout`` and ``Identity`` are dropped.  Anything else is refused in one line
naming the layer (the graph route, ``ppml_torch.convert``, takes any of them).

Weight map, layer ``i`` (Flax layouts are channels-last; the model converts at its input
and at ``Flatten``)::

    i.weight (Conv, (O, I, *k))    -> params/layers_i/kernel (*k, I, O)   permuted
    i.weight (Linear, (out, in))   -> params/layers_i/kernel (in, out)    transposed
    i.bias                         -> params/layers_i/bias
    i.weight / i.bias (BatchNorm)  -> params/layers_i/scale / bias
    i.running_mean / running_var   -> batch_stats/layers_i/mean / var
    i.num_batches_tracked          -> kept as the torch module has it (Flax has none)
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from ppml_torch.models.flax_cnn import CNN, Layer

from .common import WeightMap, WeightMapError
from .mlp import TORCH_ACTIVATIONS, activation_of_module
from .registry import Family, Transfer

_CONV = (nn.Conv1d, nn.Conv2d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
_MAX = (nn.MaxPool1d, nn.MaxPool2d)
_AVG = (nn.AvgPool1d, nn.AvgPool2d)
_GAP = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
_DROPPED = (nn.Dropout, nn.Identity)


def _t(v: Any, n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * n


def _spatial(m: nn.Module) -> int:
    return 1 if isinstance(m, (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AvgPool1d)) else 2


def _why_not(name: str, m: nn.Module) -> str | None:
    """Why layer ``name`` has no Flax twin here (None: it has one)."""
    what = f"{name} ({type(m).__name__})"
    if isinstance(m, _CONV):
        if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
            return f"{what}: groups, padding_mode and string padding are not mapped"
    elif isinstance(m, _BN):
        if not (m.affine and m.track_running_stats):
            return f"{what}: needs affine=True and running statistics"
        if m.training:
            return f"{what} is in training mode: call module.eval() (the twin uses running stats)"
    elif isinstance(m, _MAX):
        if m.return_indices:
            return f"{what}: return_indices is not mapped"
    elif isinstance(m, _AVG):
        if getattr(m, "divisor_override", None):
            return f"{what}: divisor_override is not mapped"
    elif isinstance(m, _GAP):
        if any(o != 1 for o in _t(m.output_size, 1 if isinstance(m, nn.AdaptiveAvgPool1d) else 2)):
            return f"{what}: only output size 1 is mapped"
    elif isinstance(m, nn.Flatten):
        if (m.start_dim, m.end_dim) != (1, -1):
            return f"{what}: only Flatten(1, -1) is mapped"
    elif not isinstance(m, (nn.Linear, *_DROPPED)) and activation_of_module(m) is None:
        return f"{what}: no Flax layer for it"
    return None


def matches(module: nn.Module) -> bool:
    kids = list(module.children()) if isinstance(module, nn.Sequential) else []
    return any(isinstance(m, _CONV) for m in kids) and all(not list(m.children()) for m in kids)


def explain(module: nn.Module) -> str | None:
    if not matches(module):
        return None
    bad = [r for n, m in module.named_children() if (r := _why_not(n, m))]
    return "; ".join(bad) if bad else None


def _layer(m: nn.Module) -> tuple[Layer, dict[str, Any]]:
    """The Flax layer and the torch constructor arguments (the spec) of one torch layer."""
    nd = _spatial(m)
    if isinstance(m, _CONV):
        k, s, p, d = _t(m.kernel_size, nd), _t(m.stride, nd), _t(m.padding, nd), _t(m.dilation, nd)
        bias = m.bias is not None
        spec = {"kind": "conv", "dims": nd, "in": m.in_channels, "out": m.out_channels,
                "kernel": list(k), "stride": list(s), "padding": list(p), "dilation": list(d),
                "bias": bias}  # fmt: skip
        return Layer("conv", m.out_channels, k, s, p, d, bias), spec
    if isinstance(m, _BN):
        return Layer("bn", eps=m.eps), {"kind": "bn", "dims": nd, "features": m.num_features,
                                          "eps": m.eps, "momentum": m.momentum}  # fmt: skip
    if isinstance(m, _MAX):
        k = _t(m.kernel_size, nd)
        s = _t(m.stride or m.kernel_size, nd)
        p, d = _t(m.padding, nd), _t(m.dilation, nd)
        spec = {"kind": "maxpool", "dims": nd, "kernel": list(k), "stride": list(s),
                "padding": list(p), "dilation": list(d), "ceil_mode": m.ceil_mode}  # fmt: skip
        return Layer(
            "maxpool", kernel=k, stride=s, padding=p, dilation=d, ceil_mode=m.ceil_mode
        ), spec
    if isinstance(m, _AVG):
        k = _t(m.kernel_size, nd)
        s, p = _t(m.stride or m.kernel_size, nd), _t(m.padding, nd)
        spec = {"kind": "avgpool", "dims": nd, "kernel": list(k), "stride": list(s),
                "padding": list(p), "ceil_mode": m.ceil_mode,
                "count_include_pad": m.count_include_pad}  # fmt: skip
        layer = Layer("avgpool", kernel=k, stride=s, padding=p, ceil_mode=m.ceil_mode,
                      count_include_pad=m.count_include_pad)  # fmt: skip
        return layer, spec
    if isinstance(m, _GAP):
        return Layer("gap"), {
            "kind": "gap",
            "dims": 1 if isinstance(m, nn.AdaptiveAvgPool1d) else 2,
        }
    if isinstance(m, nn.Flatten):
        return Layer("flatten"), {"kind": "flatten"}
    if isinstance(m, nn.Linear):
        spec = {"kind": "linear", "in": m.in_features, "out": m.out_features,
                "bias": m.bias is not None}  # fmt: skip
        return Layer("linear", m.out_features, bias=m.bias is not None), spec
    if isinstance(m, _DROPPED):
        return Layer("identity"), {"kind": "identity"}
    fn = activation_of_module(m)
    return Layer("act", fn=fn), {"kind": "act", "fn": fn}


def transfer(module: nn.Module) -> Transfer:
    bad = [r for n, m in module.named_children() if (r := _why_not(n, m))]
    if bad:
        raise WeightMapError(
            f"to_flax: {type(module).__name__} has layers the CNN map does not take: "
            + "; ".join(bad)
            + ".  Use the graph route (ppml_torch.convert) for them"
        )
    layers, specs, pairs, transposed, permuted, shapes, kept = [], [], {}, set(), {}, {}, set()
    for name, m in module.named_children():
        layer, spec = _layer(m)
        layers.append(layer)
        specs.append(spec)
        where = f"layers_{len(layers) - 1}"
        for key, t in m.state_dict().items():
            full = f"{name}.{key}"
            if key == "num_batches_tracked":
                kept.add(full)
                continue
            if layer.kind == "bn":
                col, leaf = {"weight": ("params", "scale"), "bias": ("params", "bias"),
                             "running_mean": ("batch_stats", "mean"),
                             "running_var": ("batch_stats", "var")}[key]  # fmt: skip
            else:
                col, leaf = "params", {"weight": "kernel", "bias": "bias"}[key]
            path = (col, where, leaf)
            pairs[full] = path
            shape = tuple(t.shape)
            if layer.kind == "conv" and key == "weight":
                perm = (*range(2, t.dim()), 1, 0)
                permuted[full] = perm
                shape = tuple(shape[i] for i in perm)
            elif layer.kind == "linear" and key == "weight":
                transposed.add(full)
                shape = shape[::-1]
            shapes[path] = shape
    flax_layers = tuple(x for x in layers if x.kind != "identity")
    # Flax names layers by their position among the kept ones; map them back
    index = {}
    for i, x in enumerate(layers):
        if x.kind != "identity":
            index[f"layers_{i}"] = f"layers_{len(index)}"
    pairs = {k: (p[0], index[p[1]], p[2]) for k, p in pairs.items()}
    shapes = {(p[0], index[p[1]], p[2]): s for p, s in shapes.items()}
    model = CNN(flax_layers)
    wmap = WeightMap(pairs, frozenset(transposed), what=type(module).__name__,
                     permuted=permuted, collections=True)  # fmt: skip

    def apply_fn(params: Any, x: Any) -> Any:
        return model.apply(params, x)

    return Transfer(
        weight_map=wmap,
        flax_shapes=shapes,
        apply_fn=apply_fn,
        spec={"family": "cnn", "layers": specs},
        kept_buffers=frozenset(kept),
        source=f"{type(module).__name__} CNN ({len(flax_layers)} layers)",
        extras={"flax_module": model},
    )


def _torch_layer(spec: dict[str, Any]) -> nn.Module:
    kind, nd = spec["kind"], spec.get("dims", 2)
    if kind == "conv":
        cls = nn.Conv1d if nd == 1 else nn.Conv2d
        return cls(spec["in"], spec["out"], spec["kernel"], spec["stride"], spec["padding"],
                   spec["dilation"], bias=spec["bias"])  # fmt: skip
    if kind == "bn":
        cls = nn.BatchNorm1d if nd == 1 else nn.BatchNorm2d
        return cls(spec["features"], eps=spec["eps"], momentum=spec["momentum"])
    if kind == "maxpool":
        cls = nn.MaxPool1d if nd == 1 else nn.MaxPool2d
        return cls(spec["kernel"], spec["stride"], spec["padding"], spec["dilation"],
                   ceil_mode=spec["ceil_mode"])  # fmt: skip
    if kind == "avgpool":
        cls = nn.AvgPool1d if nd == 1 else nn.AvgPool2d
        return cls(spec["kernel"], spec["stride"], spec["padding"], spec["ceil_mode"],
                   spec["count_include_pad"])  # fmt: skip
    if kind == "gap":
        return nn.AdaptiveAvgPool1d(1) if nd == 1 else nn.AdaptiveAvgPool2d(1)
    if kind == "flatten":
        return nn.Flatten()
    if kind == "linear":
        return nn.Linear(spec["in"], spec["out"], bias=spec["bias"])
    if kind == "identity":
        return nn.Identity()
    if kind == "act" and spec.get("fn") in TORCH_ACTIVATIONS:
        return TORCH_ACTIVATIONS[spec["fn"]]()
    raise WeightMapError(f"CNN spec: unknown layer {spec!r}")


def build(spec: dict[str, Any]) -> nn.Sequential:
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        raise WeightMapError(f"CNN spec: layers must be a non-empty list, got {layers!r}")
    return nn.Sequential(*[_torch_layer(s) for s in layers]).eval()


FAMILY = Family(
    name="cnn",
    torch_model="nn.Sequential of Conv/BatchNorm/activation/pooling/Flatten/Linear",
    flax_model="ppml_torch.models.flax_cnn.CNN",
    matches=matches,
    transfer=transfer,
    build=build,
    explain=explain,
)

"""Which inputs of an exported graph are used as indices, and into tables of what size.

Token ids and class labels are secret under MPC, so nothing can check them once shared, and
the two ``index_lowering`` forms answer differently for an id outside its table (a gather
clamps, a one-hot product gives zeros; torch raises).  The converter therefore records, for
every tensor input that reaches an index argument unchanged (through views, reshapes and
casts only), the smallest table it indexes; :meth:`ConvertedModel.check_inputs` refuses
out-of-range or non-integer ids on the owner's side, before they are shared.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ppml_torch.converters.fx.program import module_path

aten = torch.ops.aten

# ops whose result holds only values of their first argument (ids stay ids)
_VALUE_PRESERVING = {
    aten.view.default,
    aten.reshape.default,
    aten._unsafe_view.default,
    aten._to_copy.default,
    aten.clone.default,
    aten.alias.default,
    aten.unsqueeze.default,
    aten.squeeze.dim,
    aten.squeeze.dims,
    aten.squeeze.default,
    aten.expand.default,
    aten.permute.default,
    aten.transpose.int,
    aten.t.default,
    aten.slice.Tensor,
    aten.select.int,
    aten.lift_fresh_copy.default,
}


def _index_uses(node: torch.fx.Node) -> Iterator[tuple[Any, Any, int]]:
    """(index node, table node, axis of the table) of each input-index argument of ``node``."""
    t, a = node.target, node.args
    if t is aten.embedding.default:
        yield a[1], a[0], 0
    elif t in (aten.gather.default, aten.index_select.default):
        yield a[2], a[0], a[1]
    elif t is aten.index.Tensor:
        for axis, idx in enumerate(a[1]):
            if idx is not None:
                yield idx, a[0], axis


def _source(node: Any) -> torch.fx.Node | None:
    while isinstance(node, torch.fx.Node) and node.op == "call_function":
        if node.target not in _VALUE_PRESERVING:
            return None
        node = node.args[0]
    return node if isinstance(node, torch.fx.Node) and node.op == "placeholder" else None


def index_inputs(graph: torch.fx.Graph, input_names: set[str], root: str) -> dict[str, Any]:
    """``{input name: (table size, "op at module path; ...")}`` for inputs used as indices.

    Only inputs that reach the index unchanged are listed; ids computed from inputs by other
    ops (``ids + 1``) cannot be checked before sharing and are left out.
    """
    found: dict[str, tuple[int, list[str]]] = {}
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        for idx, table, axis in _index_uses(node):
            src = _source(idx)
            if src is None or src.name not in input_names:
                continue
            val = table.meta.get("val") if isinstance(table, torch.fx.Node) else None
            if not isinstance(val, torch.Tensor):
                continue
            size = int(val.shape[axis if axis >= 0 else axis + val.ndim])
            used = f"{node.target} at {module_path(node, root)}"
            old = found.get(src.name)
            if old is None:
                found[src.name] = (size, [used])
            else:
                found[src.name] = (min(old[0], size), [*old[1], used])
    return {k: (size, "; ".join(sorted(set(used)))) for k, (size, used) in found.items()}

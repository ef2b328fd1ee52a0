"""Which inputs of an exported graph are used as indices, and into tables of what size.

Token ids and class labels are secret under MPC, so nothing can check them once shared, and
the two ``index_lowering`` forms answer differently for an id outside its table (a gather
clamps, a one-hot product gives zeros; torch raises).  The converter therefore records, for
every tensor input that reaches an index argument unchanged (through views, reshapes, casts
and padding only), the smallest table it indexes; :meth:`ConvertedModel.check_inputs` refuses
out-of-range or non-integer ids on the owner's side, before they are shared.  An ignored value
on the way (``where(ids != ignore, ids, 0)``, the ``ignore_index`` of a cross entropy, e.g.
``-100`` in Hugging Face's losses) is recorded as allowed.
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
    aten.constant_pad_nd.default,  # adds the pad value (the model's own, not the input's)
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


def _ignored(node: torch.fx.Node) -> tuple[Any, int] | None:
    """``(ids, ignore)`` if ``node`` is ``where(ids != ignore, ids, fill)`` (the fill is the
    model's own value for ignored entries, e.g. 0)."""
    if node.target is not aten.where.self or len(node.args) != 3:
        return None
    cond, ids = node.args[0], node.args[1]
    if (
        isinstance(cond, torch.fx.Node)
        and cond.target is aten.ne.Scalar
        and cond.args[0] is ids
        and isinstance(cond.args[1], int)
    ):
        return ids, int(cond.args[1])
    return None


def _source(node: Any) -> tuple[torch.fx.Node | None, int | None]:
    """The input placeholder ``node``'s values come from unchanged, and the value ignored on
    the way (``None``: none)."""
    ignore = None
    while isinstance(node, torch.fx.Node) and node.op == "call_function":
        masked = _ignored(node)
        if masked is not None:
            node, ignore = masked
            continue
        if node.target not in _VALUE_PRESERVING:
            return None, None
        node = node.args[0]
    if isinstance(node, torch.fx.Node) and node.op == "placeholder":
        return node, ignore
    return None, None


def index_inputs(graph: torch.fx.Graph, input_names: set[str], root: str) -> dict[str, Any]:
    """``{input name: (table size, "op at module path; ...", ignored value or None)}`` for
    inputs used as indices.

    Only inputs that reach the index unchanged are listed; ids computed from inputs by other
    ops (``ids + 1``) cannot be checked before sharing and are left out.  An input used both
    with and without an ignored value keeps none (every id must then be in the table).
    """
    found: dict[str, tuple[int, list[str], list[int | None]]] = {}
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        for idx, table, axis in _index_uses(node):
            src, ignore = _source(idx)
            if src is None or src.name not in input_names:
                continue
            val = table.meta.get("val") if isinstance(table, torch.fx.Node) else None
            if not isinstance(val, torch.Tensor):
                continue
            size = int(val.shape[axis if axis >= 0 else axis + val.ndim])
            used = f"{node.target} at {module_path(node, root)}"
            old = found.get(src.name)
            if old is None:
                found[src.name] = (size, [used], [ignore])
            else:
                found[src.name] = (min(old[0], size), [*old[1], used], [*old[2], ignore])
    return {
        k: (size, "; ".join(sorted(set(used))), ign[0] if len(set(ign)) == 1 else None)
        for k, (size, used, ign) in found.items()
    }

"""``torch.export`` and the decomposition to core ATen, with errors that say what to change.

A failure to capture is reported with the module path that failed: torch's own shape and
dtype checks (the example inputs do not fit a layer: wrong channel count, a kernel larger
than the padded input, integer images into a convolution) as such, everything else (``if``
on tensor values, ``.item()``, data-dependent shapes) with the static-graph advice.  The
captured graph is then checked for values MPC cannot hold (complex dtypes, data-dependent
shapes).
"""

from __future__ import annotations

import contextlib
import io
import linecache
import logging
import os
import sys
import warnings
from typing import Any

import torch

from ppml_torch.converters.fx import registry
from ppml_torch.converters.fx.dtypes import is_supported
from ppml_torch.converters.fx.errors import ConversionError
from ppml_torch.converters.fx.program import module_path

KEEP_WHOLE = ("scaled_dot_product_attention",)


@contextlib.contextmanager
def _torch_pytree_quiet():
    """Hide torch 2.13's own pytree deprecation (``LeafSpec``), raised inside ``torch.export``.

    ``run_decompositions`` deep-copies tree specs, and copying a ``LeafSpec`` warns about
    torch's own use of it: noise on every conversion that the user cannot act on.  Only that
    message is filtered, and only around torch's calls.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
            category=FutureWarning,
        )
        yield


def export(module: torch.nn.Module, args: tuple, kwargs: dict, root: str) -> Any:
    """``torch.export`` then core-ATen decomposition (keeping :data:`KEEP_WHOLE` whole), with
    one-line errors naming the module that failed and what to change."""
    with _torch_pytree_quiet():
        return _export_and_decompose(module, args, kwargs, root)


_STATIC_GRAPH_ADVICE = (
    "MPC programs need one static graph: write `if` on tensor values as torch.where(cond, a, b) "
    "or a mask, and keep shapes fixed (no .item(), nonzero, boolean-mask indexing); the "
    "converter has no lowering for torch.cond"
)


# what torch's own argument checks raise (exactly these types: the data-dependent-guard errors
# subclass RuntimeError): the example inputs do not fit a layer
_INPUT_CHECKS = (RuntimeError, ValueError, TypeError, IndexError)


def _capture_error(
    e: BaseException, module: torch.nn.Module, args: tuple, kwargs: dict, root: str
) -> ConversionError:
    """One line: the module that failed, torch's reason and what to change."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    where, code = _failure_site(e, module, root)
    if type(e) not in _INPUT_CHECKS:
        return ConversionError(
            f"torch.export could not capture {root}, failing in {where}{code}: "
            f"{type(e).__name__}: {first[:200]}; {_STATIC_GRAPH_ADVICE}"
        )
    shapes = ", ".join(
        f"{str(t.dtype).removeprefix('torch.')}{list(t.shape)}"
        for t in torch.utils._pytree.tree_leaves((args, kwargs))
        if isinstance(t, torch.Tensor)
    )
    fix = "pass example inputs the module accepts (check module(*example_args) in torch)"
    ints = any(
        isinstance(t, torch.Tensor) and not (t.is_floating_point() or t.is_complex())
        for t in torch.utils._pytree.tree_leaves(args)
    )
    if ints and ("type" in first or "dtype" in first):
        fix = (
            "images and other real-valued inputs must be float: pass x.float(), scaled as in "
            "training (e.g. / 255)"
        )
    return ConversionError(
        f"the example inputs ({shapes}) do not fit {root}, failing in {where}{code}: "
        f"{first[:200]}; {fix}"
    )


def _export_and_decompose(module: torch.nn.Module, args: tuple, kwargs: dict, root: str) -> Any:
    # torch logs a graph dump for data-dependent guards before raising; the error says it all
    # (and prints the partial graph to stderr; the rest of stderr is passed on)
    shapes_log = logging.getLogger("torch.fx.experimental.symbolic_shapes")
    level = shapes_log.level
    shapes_log.setLevel(logging.ERROR)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ep = torch.export.export(module, args, kwargs)
    except Exception as e:  # torch raises many kinds here; all mean "cannot capture"
        partial = getattr(e, "partial_fx_graph", None)
        text = err.getvalue()
        sys.stderr.write(text.replace(str(partial), "").strip("\n") if partial else text)
        raise _capture_error(e, module, args, kwargs, root) from e
    finally:
        shapes_log.setLevel(level)
    sys.stderr.write(err.getvalue())
    _check_graph(ep, root)
    table = torch.export.default_decompositions()
    for name in KEEP_WHOLE:
        op = getattr(torch.ops.aten, name).default
        if op in table:
            del table[op]
    try:
        decomposed = ep.run_decompositions(table)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConversionError(
            f"lowering {root} to core ATen failed: {type(e).__name__}: {first}; "
            "if an op's decomposition is broken, keep it whole (add it to KEEP_WHOLE in "
            "ppml_torch/converters/fx/export.py) and give it a lowering"
        ) from e
    _check_graph(decomposed, root)
    return decomposed


def _failure_site(e: BaseException, module: torch.nn.Module, root: str) -> tuple[str, str]:
    """(module path, " (file:line `code`)") of the user code where an export failed.

    The deepest ``forward`` frame of a submodule gives the module path; the last frame
    outside torch and ppml_torch gives the line.
    """
    names = {id(m): name for name, m in module.named_modules()}
    where, site = root, ""
    tb = e.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        owner = frame.f_locals.get("self")
        if isinstance(owner, torch.nn.Module) and id(owner) in names:
            name = names[id(owner)]
            where = f"{name}: {type(owner).__name__}" if name else root
        fname = frame.f_code.co_filename
        if not fname.startswith("<") and not any(
            part in fname for part in ("/torch/", "/ppml_torch/", "/functorch/")
        ):
            line = (linecache.getline(fname, tb.tb_lineno) or "").strip()
            site = f" ({os.path.basename(fname)}:{tb.tb_lineno}" + (f" `{line}`)" if line else ")")
        tb = tb.tb_next
    return where, site


def _check_graph(ep: Any, root: str) -> None:
    """Refuse, naming the op and module path, values MPC cannot hold: data-dependent shapes
    (boolean-mask indexing, nonzero, unique) and dtypes with no JAX counterpart (complex)."""
    for node in ep.graph.nodes:
        if node.op not in ("placeholder", "call_function"):
            continue
        vals = node.meta.get("val")
        for val in vals if isinstance(vals, (list, tuple)) else (vals,):
            if not isinstance(val, torch.Tensor):
                continue
            if node.op == "placeholder":
                what = f"input {node.name!r} of {root}"
            else:
                what = f"{registry.op_name(node.target)} (used by {module_path(node, root)})"
            if not is_supported(val.dtype):
                raise ConversionError(
                    f"{what} has dtype {str(val.dtype).removeprefix('torch.')}, which MPC cannot "
                    "hold (SPU runs real fixed-point numbers, integers and booleans); keep real "
                    "and imaginary parts as two real tensors"
                )
            if not all(isinstance(d, int) for d in val.shape):
                raise ConversionError(
                    f"{what} gives a shape that depends on the data ({list(val.shape)}); "
                    "MPC programs need static shapes: use torch.where(mask, x, 0) and "
                    "fixed-size reductions instead of boolean-mask indexing, nonzero or unique"
                )

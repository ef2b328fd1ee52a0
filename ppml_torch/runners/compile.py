"""Compiling for SPU: a JAX function (XLA or StableHLO route) or StableHLO text you already have.

Both routes give SPU programs with the same op counts and the same communication
(tests/runners/test_compile.py checks it); ``ir`` only chooses what SPU's compiler is handed:

* ``"xla"`` (:data:`~ppml_torch.runners.config.DEFAULT_IR`): SPU's own JAX frontend
  (``spu.utils.frontend.compile``, an XLA HLO proto), the route SPU itself tests;
* ``"stablehlo"``: JAX's StableHLO text, CHLO legalized
  (:func:`ppml_torch.stablehlo.to_stablehlo`).

A compiled :class:`SpuProgram` runs in a session: ``SpuSession.run_program(program, *handles)``
(inputs put with their owners, the result a handle to reveal), as every other call does.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from ..errors import InputFileError
from ..stablehlo import Export, as_function, legalize_chlo, to_stablehlo
from .base import PUBLIC, SECRET
from .config import DEFAULT_IR, IRS, ConfigError


def visibility(v: Any) -> int:
    """SPU's ``Visibility`` number of ``'secret'``, ``'public'`` or a ``spu_pb2.Visibility``."""
    from spu import spu_pb2

    if isinstance(v, str):
        names = {SECRET: "VIS_SECRET", PUBLIC: "VIS_PUBLIC"}
        key = names.get(v.lower(), v.upper())
        if key not in spu_pb2.Visibility.keys():
            raise ConfigError(f"unknown visibility {v!r}; use 'secret' or 'public'")
        return spu_pb2.Visibility.Value(key)
    if v not in spu_pb2.Visibility.values():
        raise ConfigError(f"unknown visibility {v!r}; use 'secret', 'public' or spu_pb2.Visibility")
    return int(v)


def flat_visibilities(
    visibilities: Any, args: Sequence[Any], kwargs: Mapping[str, Any] | None = None
) -> list[int]:
    """One SPU visibility per flattened input leaf.

    ``visibilities`` is one value for every input (``'secret'``/``'public'`` or a
    ``spu_pb2.Visibility``), one per positional argument (applied to all its leaves; keyword
    arguments are then secret), or one per flattened leaf.
    """
    kwargs = kwargs or {}
    per_arg = [len(jax.tree_util.tree_leaves(a)) for a in args]
    n_kw = len(jax.tree_util.tree_leaves(kwargs))
    n = sum(per_arg) + n_kw
    if isinstance(visibilities, (str, int)):
        return [visibility(visibilities)] * n
    vis = list(visibilities)
    if len(vis) == n:
        return [visibility(v) for v in vis]
    if len(vis) == len(args):
        out = [visibility(v) for v, k in zip(vis, per_arg, strict=True) for _ in range(k)]
        return out + [visibility(SECRET)] * n_kw
    raise ConfigError(
        f"{len(vis)} visibilities for {len(args)} positional arguments holding {n} arrays; "
        "give one visibility, one per argument or one per array"
    )


@dataclasses.dataclass(frozen=True, eq=False)
class SpuProgram:
    """An SPU executable plus what is needed to call it like the traced function.

    ``executable`` reads ``in_avals`` (the flattened arguments, in ``in_tree`` order, with
    ``visibilities``) and writes the leaves of ``out_struct`` (a pytree of
    ``jax.ShapeDtypeStruct``).  ``source`` is the IR handed to SPU's compiler (StableHLO text;
    empty for the XLA route, whose HLO proto stays inside SPU's frontend).
    """

    executable: Any  # spu_pb2.ExecutableProto
    in_tree: Any
    in_avals: tuple[jax.ShapeDtypeStruct, ...]
    visibilities: tuple[int, ...]
    out_struct: Any
    ir: str
    source: bytes

    @property
    def name(self) -> str:
        return self.executable.name

    @property
    def code(self) -> bytes:
        """SPU's compiled program (pphlo MLIR)."""
        return self.executable.code

    @property
    def pphlo(self) -> str:
        return self.executable.code.decode("utf-8")


def _avals(leaves: Sequence[Any]) -> tuple[jax.ShapeDtypeStruct, ...]:
    import numpy as np

    return tuple(jax.ShapeDtypeStruct(np.shape(x), np.dtype(x.dtype)) for x in leaves)


def compile_stablehlo(
    text: str | bytes,
    in_avals: Sequence[jax.ShapeDtypeStruct],
    visibilities: Sequence[Any],
    out_struct: Any,
    *,
    name: str = "main",
    copts: Any = None,
) -> SpuProgram:
    """SPU program of StableHLO (MLIR text or bytecode) taking ``in_avals`` as flat inputs.

    CHLO in text is legalized first.  Raises ``RuntimeError`` with SPU's own message (its MLIR
    parser error comes first) when SPU rejects the program.
    """
    import spu.api as spu_api
    from spu import spu_pb2

    if isinstance(text, str):
        text = legalize_chlo(text).encode("utf-8")
    vis = [visibility(v) for v in visibilities]
    if len(vis) != len(in_avals):
        raise ConfigError(f"{len(vis)} visibilities for {len(in_avals)} inputs of {name}")
    source = spu_pb2.CompilationSource(
        ir_txt=text, ir_type=spu_pb2.SourceIRType.STABLEHLO, input_visibility=vis
    )
    code = spu_api.compile(source, copts or spu_pb2.CompilerOptions())
    n_out = len(jax.tree_util.tree_leaves(out_struct))
    exe = spu_pb2.ExecutableProto(
        name=name,
        input_names=[f"in{i}" for i in range(len(vis))],
        output_names=[f"out{i}" for i in range(n_out)],
        code=code,
    )
    in_tree = jax.tree_util.tree_structure((tuple(range(len(vis))), {}))
    return SpuProgram(exe, in_tree, tuple(in_avals), tuple(vis), out_struct, "stablehlo", text)


def compile_for_spu(
    fn: Any,
    example_args: Sequence[Any],
    visibilities: Any = SECRET,
    *,
    example_kwargs: Mapping[str, Any] | None = None,
    ir: str = DEFAULT_IR,
    copts: Any = None,
    name: str | None = None,
) -> SpuProgram:
    """Trace ``fn(*example_args, **example_kwargs)`` and compile it for SPU.

    ``fn`` is a pure JAX function or a ``ConvertedModel`` (then ``example_args`` are the model
    inputs; the params come first, with the visibility given for them as the first entry when
    visibilities are per argument).  Example arguments may be ``jax.ShapeDtypeStruct``.
    """
    if ir not in IRS:
        raise ConfigError(f"unknown ir {ir!r}; use one of {', '.join(IRS)}")
    from spu import spu_pb2

    f, lead, default_name = as_function(fn)
    args = (*lead, *example_args)
    kwargs = dict(example_kwargs or {})
    name = name or default_name
    vis = flat_visibilities(visibilities, args, kwargs)
    f = fold_constants(f, args, kwargs)
    leaves, in_tree = jax.tree_util.tree_flatten((args, kwargs))
    copts = copts or spu_pb2.CompilerOptions()

    if ir == "stablehlo":
        out_struct = jax.eval_shape(f, *args, **kwargs)
        program = compile_stablehlo(
            to_stablehlo(f, *args, **kwargs),
            _avals(leaves),
            vis,
            out_struct,
            name=name,
            copts=copts,
        )
        return dataclasses.replace(program, in_tree=in_tree)

    from spu.utils import frontend as spu_fe

    # SPU's frontend names the program after fn.__name__; a partial or lambda is fine.
    def program_fn(*a: Any, **k: Any) -> Any:
        return f(*a, **k)

    program_fn.__name__ = name
    exe, out_struct = spu_fe.compile(
        spu_fe.Kind.JAX,
        program_fn,
        list(args),
        kwargs,
        [f"in{i}" for i in range(len(leaves))],
        vis,
        lambda outs: [f"out{i}" for i in range(len(outs))],
        copts=copts,
    )
    out_struct = jax.tree_util.tree_map(
        lambda o: jax.ShapeDtypeStruct(o.shape, o.dtype), out_struct
    )
    return SpuProgram(exe, in_tree, _avals(leaves), tuple(vis), out_struct, ir, b"")


# Largest total size (elements) of the values fold_constants may precompute: a constant
# broadcast to a huge shape would otherwise become a huge dense constant in the program.
FOLD_LIMIT = 64 * 2**20


def folding(f: Callable[..., Any], structs: Sequence[Any]) -> Callable[..., Any]:
    """``f`` that folds its constants when SPU's frontend traces it (SecretFlow's actors, where
    the frontend already holds its lock and patches, so they are not taken again).  Named as
    ``f``: SecretFlow names the program after it."""

    def program(*args: Any) -> Any:
        return fold_constants(f, structs, {}, patched=True)(*args)

    program.__name__ = getattr(f, "__name__", "fn")
    return program


def fold_constants(
    f: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any], *, patched: bool = False
):
    """``f`` with every value that depends on no input computed now, in plaintext.

    SPU 0.9.3 computes a transpose of a constant wrongly (both IRs): ``x @ w.T`` with ``w`` an
    array the function closes over came back off by 33 on values near 10, with no error
    (tests/runners/test_compile.py).  Constants are public, so computing everything that
    depends only on them before compiling changes no result and leaves SPU no constant
    expression to fold.  Returns ``f`` itself when there is nothing to fold; refuses, in one
    line, a program whose constant part would be larger than :data:`FOLD_LIMIT` elements and
    holds a transpose.
    """
    from jax._src import core
    from jax._src.interpreters import partial_eval as pe

    from ..stablehlo import spu_jax_patches

    leaves, _ = jax.tree_util.tree_flatten((args, kwargs))
    with contextlib.nullcontext() if patched else spu_jax_patches():
        closed, out_shape = jax.make_jaxpr(lambda a, k: f(*a, **k), return_shape=True)(
            tuple(args), dict(kwargs)
        )
    if not closed.consts and not _has_constant_work(closed.jaxpr):
        return f
    known, unknown, _, res_avals = pe.partial_eval_jaxpr_nounits(
        closed, [True] * len(closed.jaxpr.invars), instantiate=True
    )
    if not res_avals:
        return f
    size = sum(int(np.prod(a.shape)) for a in res_avals)
    if size > FOLD_LIMIT:
        if _has_transpose(known.jaxpr):
            raise ConfigError(
                f"{getattr(f, '__name__', 'fn')}: its constants would fold into {size} values "
                "and include a transpose, which SPU 0.9.3 computes wrongly on constants; pass "
                "the large constants as inputs (session.put(..., owner='public'))"
            )
        return f
    with jax.ensure_compile_time_eval():  # concrete even inside SPU's frontend trace
        residuals = [np.asarray(r) for r in jax.jit(core.jaxpr_as_fun(known))()]
    out_tree = jax.tree_util.tree_structure(out_shape)

    def folded(*a: Any, **k: Any) -> Any:
        flat = jax.tree_util.tree_leaves((a, k))
        return jax.tree_util.tree_unflatten(out_tree, core.jaxpr_as_fun(unknown)(*residuals, *flat))

    folded.__name__ = getattr(f, "__name__", "fn")
    if len(leaves) != len(closed.jaxpr.invars):  # pragma: no cover - a pytree jax would not trace
        return f
    return folded


def _has_constant_work(jaxpr: Any) -> bool:
    """Any equation whose inputs are all literals (e.g. ``iota``, a transpose of a literal)."""
    from jax._src import core

    return any(all(isinstance(v, core.Literal) for v in e.invars) for e in jaxpr.eqns)


def _has_transpose(jaxpr: Any) -> bool:
    from jax._src import core

    for e in jaxpr.eqns:
        if e.primitive.name == "transpose":
            return True
        for sub in core.subjaxprs(e) if hasattr(core, "subjaxprs") else ():
            if _has_transpose(sub):
                return True
    return False


def compile_export(export: Export, visibilities: Any = SECRET, *, copts: Any = None) -> SpuProgram:
    """SPU program of an exported ``.mlir`` (see ``ppml-torch export-stablehlo``).

    ``visibilities``: one for every input, or one per manifest input.  The program's output
    pytree is the flat list of the manifest's outputs.
    """
    import numpy as np

    in_avals = [
        jax.ShapeDtypeStruct(tuple(e["shape"]), np.dtype(e["dtype"])) for e in export.inputs
    ]
    if isinstance(visibilities, (str, int)):
        visibilities = [visibilities] * len(in_avals)
    out_struct = [
        jax.ShapeDtypeStruct(tuple(e["shape"]), np.dtype(e["dtype"])) for e in export.outputs
    ]
    try:
        return compile_stablehlo(
            export.text, in_avals, visibilities, out_struct, name=export.mlir_path.stem, copts=copts
        )
    except RuntimeError as e:
        first = next((ln for ln in str(e).splitlines() if ln.strip()), "rejected")
        raise InputFileError(
            f"{export.mlir_path}: SPU cannot compile it ({first.strip()}); re-export the model"
        ) from None

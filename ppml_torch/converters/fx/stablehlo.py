"""StableHLO out of a converted model, and SPU compiling it without going through XLA's HLO.

JAX lowers every program to StableHLO (MLIR) first; SPU's usual JAX frontend then converts that
to an XLA ``HloModuleProto`` and SPU converts it back to MLIR.  SPU 0.9.3 also takes StableHLO
directly (``SourceIRType.STABLEHLO``, the route of its experimental torch_xla path), and it
accepts what JAX 0.4.26 emits, text or MLIR bytecode, with one exception: JAX leaves a few ops
in the CHLO dialect (``chlo.erf`` for exact GELU, ``chlo.sinh``, ``chlo.tan``, ``chlo.erf_inv``,
``chlo.top_k`` ...), which SPU's parser does not know::

    error: Dialect `chlo' not found for custom op 'chlo.erf'
    [Enforce fail at libspu/compiler/front_end/fe.cc:57] (module). MLIR parser failure

:func:`to_stablehlo` therefore rewrites CHLO into StableHLO with the MHLO passes that ship in
jaxlib (``chlo-legalize-to-hlo`` then ``hlo-legalize-to-stablehlo``), exactly what JAX does on
its way to HLO.  ``erf`` becomes ``stablehlo.custom_call @mhlo.erf``, which SPU runs with its
own erf approximation, as it does for the XLA route.  Both routes give SPU programs with the
same op counts (tests/converters/fx/test_stablehlo.py checks it).

Public API:

* :func:`to_stablehlo` -- the StableHLO text of a JAX function or a ``ConvertedModel``;
* :func:`compile_for_spu` -- trace + compile for SPU, ``ir="stablehlo"`` or ``ir="xla"``;
* :func:`compile_stablehlo` -- SPU-compile StableHLO text you already have (e.g. a ``.mlir``);
* :func:`run_executable` / :meth:`SpuProgram.run` -- run it in-process, one SPU runtime per
  party, each in its own thread.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

IRS = ("stablehlo", "xla")

_VIS_NAMES = {"secret": "VIS_SECRET", "public": "VIS_PUBLIC"}
_passes_registered = False
_passes_lock = threading.Lock()


# -- StableHLO text -----------------------------------------------------------------------------
def _as_function(fn_or_model: Any) -> tuple[Callable[..., Any], tuple[Any, ...], str]:
    """(pure function, leading arguments to prepend, name) of a function or ConvertedModel."""
    from ppml_torch.model import ConvertedModel

    if isinstance(fn_or_model, ConvertedModel):
        name = fn_or_model.source or "model"
        return fn_or_model.apply_fn, (fn_or_model.params,), _identifier(name)
    if not callable(fn_or_model):
        raise TypeError(
            f"to_stablehlo: expected a JAX function or a ConvertedModel, got "
            f"{type(fn_or_model).__name__}"
        )
    return fn_or_model, (), _identifier(getattr(fn_or_model, "__name__", "fn"))


def _identifier(name: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return out or "fn"


def _lower(fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]):
    """``jax.jit(fn).lower`` with every argument kept and SPU's sort patch applied.

    ``keep_unused=True``: jit would otherwise drop arguments the program does not read, and
    SPU's inputs would no longer line up with the caller's.  SPU's frontend patches JAX's sort
    (no float->int bitcast, meaningless on fixed point) while it lowers; do the same.
    """
    from spu.utils import frontend as spu_fe

    jitted = jax.jit(fn, keep_unused=True)
    lock = getattr(spu_fe, "_jax_lock", None) or threading.Lock()
    with lock:
        patches = spu_fe._patch_jax() if hasattr(spu_fe, "_patch_jax") else {}
        try:
            return jitted.lower(*args, **kwargs)
        finally:
            if patches:
                spu_fe._restore_jax_patch(patches)


def legalize_chlo(text: str) -> str:
    """StableHLO text with every ``chlo.*`` op rewritten into StableHLO (no-op without CHLO).

    SPU 0.9.3 cannot parse the CHLO dialect.  The MHLO passes shipped in jaxlib lower CHLO to
    MHLO and MHLO back to StableHLO; ops StableHLO lacks (``erf``) come out as
    ``stablehlo.custom_call @mhlo.<op>``, which SPU understands.
    """
    if "chlo." not in text:
        return text
    from jax._src.interpreters import mlir as jax_mlir
    from jaxlib.mlir import ir, passmanager
    from jaxlib.mlir._mlir_libs import _mlirHlo

    global _passes_registered
    with _passes_lock:
        if not _passes_registered:
            _mlirHlo.register_mhlo_passes()
            _passes_registered = True
    with jax_mlir.make_ir_context():
        module = ir.Module.parse(text)
        pm = passmanager.PassManager.parse(
            "builtin.module(func.func(chlo-legalize-to-hlo),hlo-legalize-to-stablehlo)"
        )
        pm.run(module.operation)
        out = str(module)
    if "chlo." in out:
        left = sorted({w.split("(")[0] for w in out.split() if w.startswith("chlo.")})
        raise NotImplementedError(
            f"StableHLO still holds CHLO ops {left} after legalization; SPU cannot parse them. "
            "Use compile_for_spu(..., ir='xla') for this program"
        )
    return out


def to_stablehlo(
    fn_or_model: Any, *example_args: Any, legalize: bool = True, **example_kwargs: Any
) -> str:
    """StableHLO (MLIR text) of a pure JAX function, traced on ``example_args``.

    For a ``ConvertedModel`` the function is ``model.apply`` with ``model.params`` as its first
    argument, so pass only the model's inputs.  Example arguments may be arrays or
    ``jax.ShapeDtypeStruct``; the program's inputs are their flattened leaves (params first for
    a model) in ``jax.tree_util`` order, all kept even when unused.

    ``legalize=True`` (default) rewrites CHLO ops into StableHLO (see :func:`legalize_chlo`), so
    the text is what SPU's ``SourceIRType.STABLEHLO`` accepts; ``False`` gives JAX's own text.
    """
    fn, lead, _ = _as_function(fn_or_model)
    text = _lower(fn, (*lead, *example_args), example_kwargs).as_text()
    return legalize_chlo(text) if legalize else text


# -- compiling for SPU --------------------------------------------------------------------------
def _visibility(v: Any) -> int:
    from spu import spu_pb2

    if isinstance(v, str):
        key = _VIS_NAMES.get(v.lower(), v.upper())
        if key not in spu_pb2.Visibility.keys():
            raise ValueError(f"unknown visibility {v!r}; use 'secret' or 'public'")
        return spu_pb2.Visibility.Value(key)
    if v not in spu_pb2.Visibility.values():
        raise ValueError(f"unknown visibility {v!r}; use 'secret', 'public' or spu_pb2.Visibility")
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
        return [_visibility(visibilities)] * n
    vis = list(visibilities)
    if len(vis) == n:
        return [_visibility(v) for v in vis]
    if len(vis) == len(args):
        out = [_visibility(v) for v, k in zip(vis, per_arg, strict=True) for _ in range(k)]
        return out + [_visibility("secret")] * n_kw
    raise ValueError(
        f"{len(vis)} visibilities for {len(args)} positional arguments holding {n} arrays; "
        "give one visibility, one per argument or one per array"
    )


@dataclasses.dataclass(frozen=True, eq=False)
class SpuProgram:
    """An SPU executable plus what is needed to call it like the traced function.

    ``executable`` reads inputs ``in0, in1, ...`` (the flattened arguments) and writes
    ``out0, out1, ...``; ``out_struct`` is the output pytree of ``jax.ShapeDtypeStruct``.
    ``source`` is the IR handed to SPU's compiler (StableHLO text, or serialized HLO proto).
    """

    executable: Any  # spu_pb2.ExecutableProto
    in_tree: Any
    visibilities: tuple[int, ...]
    out_struct: Any
    ir: str
    source: bytes

    @property
    def code(self) -> bytes:
        """SPU's compiled program (pphlo MLIR text)."""
        return self.executable.code

    @property
    def pphlo(self) -> str:
        return self.executable.code.decode("utf-8")

    def run(
        self, runtime_config: Any, world_size: int, *args: Any, profile: bool = False, **kwargs: Any
    ) -> tuple[Any, SpuRun]:
        """Run in-process on ``world_size`` parties; outputs come back as the traced pytree."""
        leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
        if tree != self.in_tree:
            raise ValueError(
                f"{self.executable.name}: inputs are structured as {tree}, the program was "
                f"compiled for {self.in_tree}"
            )
        flat, stats = run_executable(
            self.executable, runtime_config, world_size, leaves, self.visibilities, profile=profile
        )
        out_tree = jax.tree_util.tree_structure(self.out_struct)
        return jax.tree_util.tree_unflatten(out_tree, flat), stats


def compile_stablehlo(
    text: str | bytes,
    visibilities: Sequence[Any],
    *,
    n_outputs: int,
    name: str = "main",
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    copts: Any = None,
) -> Any:
    """SPU ``ExecutableProto`` of StableHLO (MLIR text or bytecode) with one visibility per input.

    CHLO in the text is legalized first.  Raises ``RuntimeError`` with SPU's own message (its
    MLIR parser error comes first) when SPU rejects the program.
    """
    import spu.api as spu_api
    from spu import spu_pb2

    if isinstance(text, str):
        text = legalize_chlo(text).encode("utf-8")
    vis = [_visibility(v) for v in visibilities]
    source = spu_pb2.CompilationSource(
        ir_txt=text, ir_type=spu_pb2.SourceIRType.STABLEHLO, input_visibility=vis
    )
    code = spu_api.compile(source, copts or spu_pb2.CompilerOptions())
    return spu_pb2.ExecutableProto(
        name=name,
        input_names=list(input_names or [f"in{i}" for i in range(len(vis))]),
        output_names=list(output_names or [f"out{i}" for i in range(n_outputs)]),
        code=code,
    )


def compile_for_spu(
    fn: Any,
    example_args: Sequence[Any],
    visibilities: Any = "secret",
    *,
    example_kwargs: Mapping[str, Any] | None = None,
    ir: str = "stablehlo",
    copts: Any = None,
    name: str | None = None,
) -> SpuProgram:
    """Trace ``fn(*example_args, **example_kwargs)`` and compile it for SPU.

    ``fn`` is a pure JAX function or a ``ConvertedModel`` (then ``example_args`` are the model
    inputs; the params come first, with the visibility given for them as the first entry when
    visibilities are per argument).  Example arguments may be ``jax.ShapeDtypeStruct``.

    ``ir="stablehlo"`` hands SPU JAX's StableHLO text (CHLO legalized); ``ir="xla"`` goes
    through SPU's own frontend (``spu.utils.frontend.compile``: an XLA HLO proto).
    """
    if ir not in IRS:
        raise ValueError(f"ir must be one of {IRS}, got {ir!r}")
    from spu import spu_pb2

    f, lead, default_name = _as_function(fn)
    args = (*lead, *example_args)
    kwargs = dict(example_kwargs or {})
    name = name or default_name
    vis = flat_visibilities(visibilities, args, kwargs)
    leaves, in_tree = jax.tree_util.tree_flatten((args, kwargs))
    copts = copts or spu_pb2.CompilerOptions()

    if ir == "stablehlo":
        text = to_stablehlo(f, *args, **kwargs)
        out_struct = jax.eval_shape(f, *args, **kwargs)
        n_out = len(jax.tree_util.tree_leaves(out_struct))
        exe = compile_stablehlo(text, vis, n_outputs=n_out, name=name, copts=copts)
        source = text.encode("utf-8")
    else:
        from spu.utils import frontend as spu_fe

        # SPU's frontend names the program after fn.__name__; a partial or lambda is fine.
        def program(*a: Any, **k: Any) -> Any:
            return f(*a, **k)

        program.__name__ = name
        exe, out_struct = spu_fe.compile(
            spu_fe.Kind.JAX,
            program,
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
        source = b""  # the HLO proto stays inside SPU's frontend
    return SpuProgram(exe, in_tree, tuple(vis), out_struct, ir, source)


# -- running in-process -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SpuRun:
    """Cost of one :func:`run_executable` call.

    ``send_bytes``/``send_actions`` are summed over all parties and ``log`` is SPU's profiling
    log of the run (per-op ``pphlo.*`` lines of every party); all three only with
    ``profile=True``, else ``None``.
    """

    run_s: float
    send_bytes: int | None = None
    send_actions: int | None = None
    log: str | None = None


def run_executable(
    executable: Any,
    runtime_config: Any,
    world_size: int,
    inputs: Sequence[Any],
    visibilities: Sequence[Any],
    *,
    profile: bool = False,
) -> tuple[list[np.ndarray], SpuRun]:
    """Run an SPU executable in this process: one ``spu.api.Runtime`` per party, one thread each.

    Inputs are secret-shared (or made public) with their visibilities, every party's runtime is
    built over an in-memory link and runs the program concurrently (construction already
    exchanges messages, so it happens in the party threads too), and the outputs are
    reconstructed.  ``run_s`` covers runtime set-up + execution.  ``profile=True`` turns on
    SPU's per-op profile in every party and returns the log and the communication totals.
    """
    import spu.api as spu_api
    from spu import libspu, spu_pb2

    from ppml_torch.runners.spu import RUN_LOCK, in_party_threads

    if len(inputs) != len(executable.input_names):
        raise ValueError(
            f"{executable.name}: {len(inputs)} inputs for a program reading "
            f"{len(executable.input_names)}"
        )
    if len(visibilities) != len(inputs):
        raise ValueError(f"{len(visibilities)} visibilities for {len(inputs)} inputs")
    vis = [_visibility(v) for v in visibilities]
    rc = spu_pb2.RuntimeConfig()
    rc.CopyFrom(runtime_config)
    rc.enable_pphlo_profile = profile
    io = spu_api.Io(world_size, rc)
    shares = [io.make_shares(np.asarray(x), v) for x, v in zip(inputs, vis, strict=True)]

    desc = libspu.link.Desc()
    desc.id = f"ppml-stablehlo-{uuid.uuid4().hex}"  # runs in one process never cross-talk
    desc.recv_timeout_ms = 3600 * 1000
    for rank in range(world_size):
        desc.add_party(f"p{rank}", f"thread_{rank}")

    def party(rank: int) -> list[Any]:
        link = libspu.link.create_mem(desc, rank)
        rt = spu_api.Runtime(link, rc)
        for name, share in zip(executable.input_names, shares, strict=True):
            rt.set_var(name, share[rank])
        rt.run(executable)
        return [rt.get_var(name) for name in executable.output_names]

    tap = mark = None
    if profile:
        from ppml_torch.runners.comm import SpuLogTap

        tap = SpuLogTap.get()
    with RUN_LOCK:
        if tap is not None:
            mark = tap.mark()
        t0 = time.perf_counter()
        per_party = in_party_threads(party, world_size)
        run_s = time.perf_counter() - t0
        log = tap.read_since(mark) if tap is not None else None
    outputs = [np.asarray(io.reconstruct(list(outs))) for outs in zip(*per_party, strict=True)]
    if log is None:
        return outputs, SpuRun(run_s)
    from ppml_torch.runners.comm import parse_link_lines

    links = parse_link_lines(log)
    return outputs, SpuRun(run_s, sum(b for b, _ in links), sum(a for _, a in links), log)

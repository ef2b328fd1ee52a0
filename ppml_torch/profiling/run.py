"""``profile`` and ``profile_call``: run a program whole, then part by part, and measure both.

:func:`profile_call` is ``session.call`` that also profiles: it runs ``fn`` on the handles
once as one program (the totals, and the output it returns), then the same computation cut
into parts (:mod:`.program`), one program each, on the same handles, reading the cost of
every run from SPU's log (per party).  :func:`profile` converts a torch module, puts its
weights and example inputs and profiles ``apply`` (or, with ``grads=True``, the gradient of
the sum of its outputs).

``fit(..., profile=True)`` (``ppml_torch/train/profile_step.py``) marks its training step so
(the model with :func:`~.scopes.model_scope`, the loss and optimizer with
``part_scope("loss")`` / ``part_scope("optimizer")``, metadata only) and runs the first
batch's step once through ``profile_call``; the report goes into ``History.profile``.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ..model import ROUTES
from .report import Cost, Measured, PartCost, ProfileError, ProfileReport
from .scopes import model_scope, part_scope


def profile(
    module: Any,
    example_inputs: Any,
    *,
    session: Any = "spu:SEMI2K",
    route: str = "graph",
    grads: bool = False,
    example_kwargs: Mapping[str, Any] | None = None,
    index_lowering: str = "auto",
    repeats: int = 1,
) -> ProfileReport:
    """Where the MPC cost of a torch module goes, per module and per kind of work.

    Args:
      module: a ``torch.nn.Module`` (converted here: ``ppml_torch.convert`` on the example
        inputs for ``route="graph"``, ``ppml_torch.to_flax`` for ``"flax"``) or a
        :class:`~ppml_torch.model.ConvertedModel`.
      example_inputs: the positional inputs (a tuple, or one tensor/array): their shapes are
        the program's.  The first party puts the weights, the second the inputs, as secrets.
      session: an open ``spu`` session or a run spec (``"spu:ABY3"``; opened and closed here).
      grads: profile ``jax.value_and_grad`` of the sum of the outputs with respect to the
        weights: forward and backward columns.
      repeats: run the whole program and each part this many times; times are medians.

    Returns a :class:`~.report.ProfileReport`; ``print(report)`` shows the table.
    Nothing is revealed: the outputs stay secret and are freed.
    """
    import jax

    from ..runners.plan import session_plan

    if route not in ROUTES:
        raise ProfileError(f"unknown route {route!r}; use one of {', '.join(ROUTES)}")
    plan = session_plan(session, error=ProfileError, example="spu:SEMI2K", torch_error=_NO_MPC)
    _check_backend(plan.config.backend)
    _check_repeats(repeats)
    args = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    kwargs = dict(example_kwargs or {})
    cm, module_kinds, root = _converted(module, tuple(args), kwargs, route, index_lowering)
    x_args = tuple(_as_array(a) for a in args)
    x_kwargs = {k: _as_array(v) for k, v in kwargs.items()}
    cm.check_inputs(*x_args, **x_kwargs)

    def forward(params, inputs):
        a, k = inputs
        with model_scope():
            return cm.apply(params, *a, **k)

    def with_grads(params, inputs):
        def total(p):
            out = forward(p, inputs)
            with part_scope("sum of outputs"):
                leaves = [o for o in jax.tree_util.tree_leaves(out) if _is_float(o)]
                return sum(jax.numpy.sum(o) for o in leaves)

        return jax.value_and_grad(total)(params)

    fn = with_grads if grads else forward
    fn.__name__ = "profile_" + root
    with plan.borrow() as s:
        parties = s.parties
        hp = s.put(cm.params, owner=parties[0])
        hx = s.put((x_args, x_kwargs), owner=parties[1 % len(parties)])
        try:
            out, report = profile_call(
                s,
                fn,
                hp,
                hx,
                repeats=repeats,
                source=cm.source or root,
                route=cm.route,
                root_kind=root,
                module_kinds=module_kinds,
                grads=grads,
            )
            s.free(out)
        finally:
            s.free(hp)
            s.free(hx)
    return report


_NO_MPC = (
    "profiling a plaintext run has nothing to count (no shares, no messages); give an MPC "
    "run such as spu:SEMI2K or spu:ABY3"
)


def profile_call(
    session: Any,
    fn: Callable[..., Any],
    *handles: Any,
    name: str | None = None,
    repeats: int = 1,
    source: str | None = None,
    route: str = "function",
    root_kind: str = "",
    module_kinds: Mapping[str, str] | None = None,
    grads: bool | None = None,
    weights: int | None = 0,
) -> tuple[Any, ProfileReport]:
    """``session.call(fn, *handles)`` that also profiles it: ``(output handle, report)``.

    ``fn``'s model part is marked with :func:`~.scopes.model_scope`, work outside every
    module with :func:`~.scopes.part_scope`; everything else is ``(outside modules)``.
    ``module_kinds`` maps module paths to class names (for parents that hold no work of
    their own).  ``grads``: show forward and backward columns (default: when the program has
    backward work).  ``weights``: the position of the handle holding the model's weights
    (state_dict names or a Flax ``{"params": ...}`` tree; None: none), so that work on a
    module's weights done in its parent's code counts as the module's.
    """
    import jax

    from ..runners.base import Handle, Session

    if not isinstance(session, Session):
        raise ProfileError(f"profile_call needs an open session, got {type(session).__name__}")
    _check_backend(session.config.backend)
    _check_repeats(repeats)
    for i, h in enumerate(handles):
        if not isinstance(h, Handle):
            raise ProfileError(
                f"profile_call: argument {i} is a {type(h).__name__}, not a Handle; put it in "
                "first with session.put(value, owner=...)"
            )
    from ..stablehlo import spu_jax_patches
    from .program import cut

    name = name or getattr(fn, "__name__", "fn")
    flax_kinds: dict[str, str] = {}
    with spu_jax_patches(), _flax_classes(flax_kinds):
        closed = jax.make_jaxpr(fn)(*[h.structure for h in handles])
    kinds = {**flax_kinds, **(module_kinds or {})}
    program = cut(closed, kinds, root_kind, _weight_modules(handles, weights))

    out, whole = _measure(
        session, lambda: session.call(fn, *handles, name=name), repeats, wall=True
    )
    try:
        parts, compile_s = _run_parts(session, program, handles, name, repeats)
    except BaseException:
        session.free(out)
        raise
    measured = sum(m.cost.seconds for _, m in parts)
    scale = whole.cost.seconds / measured if measured > 0 else 1.0
    costs = tuple(
        PartCost(
            part.row,
            part.path,
            part.module_kind,
            part.kind,
            part.backward,
            Cost(m.cost.bytes, m.cost.sends, m.cost.seconds * scale),
            m.cost.seconds,
            m.party_bytes,
            m.party_sends,
            len(part.ops),
        )
        for part, m in parts
    )
    report = ProfileReport(
        source=source or name,
        session=_describe(session),
        route=route,
        grads=any(p.backward for p in costs) if grads is None else grads,
        parties=tuple(session.parties),
        whole=whole,
        parts=costs,
        parts_compile_s=compile_s,
        time_scale=scale,
        module_kinds=kinds,
    )
    return out, report


def _weight_modules(handles: tuple[Any, ...], weights: int | None) -> dict[int, str]:
    """Flat input index -> module path of each leaf of ``handles[weights]``."""
    import jax

    if weights is None or not 0 <= weights < len(handles):
        return {}
    start = sum(len(h.avals) for h in handles[:weights])
    leaves = jax.tree_util.tree_flatten_with_path(handles[weights].structure)[0]
    out = {}
    for i, (path, _) in enumerate(leaves):
        keys = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        if keys and keys[0] == "params" and len(keys) > 1:  # a Flax variable collection
            keys = keys[1:]
        name = ".".join(keys)
        out[start + i] = name.rsplit(".", 1)[0] if "." in name else ""
    return out


def check_run(run: Any) -> None:
    """A run spec (:class:`~ppml_torch.runners.runspec.RunSpec`) ``profile`` can measure:
    one-line error otherwise, before anything starts."""
    if getattr(run, "is_torch", False):
        raise ProfileError(_NO_MPC)
    _check_backend(run.backend)


def _check_backend(backend: str) -> None:
    if backend == "cpu":
        raise ProfileError(_NO_MPC)
    if backend != "spu":
        raise ProfileError(
            f"profile runs on in-process spu sessions (every party's figures in one log), not "
            f"{backend}; profile with spu:<protocol>: SecretFlow runs the same SPU programs"
        )


def _check_repeats(repeats: Any) -> None:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ProfileError(f"repeats must be a whole number of at least 1, got {repeats!r}")


def _describe(session: Any) -> str:
    c = session.config
    return ":".join(x for x in (c.backend, c.protocol, c.field) if x)


def _measure(
    session: Any, call: Callable[[], Any], repeats: int, *, wall: bool
) -> tuple[Any, Measured]:
    """Run ``call`` ``repeats`` times: the last output handle and the measured cost.

    Bytes and sends (per party) come from SPU's log of the run and must add up to the
    session's report of it.  Time: the median of the session's run time (``wall``: the whole
    program) or of SPU's own execution time of the slowest party (the parts: without the
    thread start-up of each call, which would weigh on small parts).
    """
    from ..runners.comm import SpuLogTap, execution_seconds, party_links

    tap = SpuLogTap.get()
    out, times, compile_s = None, [], 0.0
    links: list[tuple[int, int]] = []
    for _ in range(repeats):
        if out is not None:
            session.free(out)
        mark = tap.mark()
        out = call()
        rep = session.last_report
        text = tap.read_since(mark)
        links = party_links(text)
        execs = execution_seconds(text)
        problem = None
        if rep.comm is None:
            problem = (
                "this session runs without SPU's profile (open_session(..., profile=False)), so "
                "it counts nothing; open it with profile=True (the default)"
            )
        elif sum(b for b, _ in links) != rep.comm.send_bytes:
            problem = (
                "another SPU run in this process wrote to SPU's log during profiling; profile "
                "when no other session runs in the process"
            )
        if problem:
            session.free(out)
            raise ProfileError(problem)
        compile_s += rep.compile_s or 0.0
        times.append(rep.run_s if wall or len(execs) != len(links) else max(execs, default=0.0))
    cost = Cost(sum(b for b, _ in links), sum(a for _, a in links), statistics.median(times))
    party_bytes = tuple(sorted(b for b, _ in links))
    party_sends = tuple(sorted(a for _, a in links))
    return out, Measured(cost, compile_s, party_bytes, party_sends)


def _run_parts(
    session: Any, program: Any, handles: tuple[Any, ...], name: str, repeats: int
) -> tuple[list[tuple[Any, Measured]], float]:
    """Run every part in order in the session; each part's measured cost.

    A value lives in a handle: the caller's (program inputs) or the output of the part that
    made it.  A part's handle is freed once the last part reading it has run.
    """
    source: dict[int, tuple[str, int]] = {}  # value id -> ("in", handle #) / ("part", index)
    leaf: dict[int, int] = {}  # value id -> leaf index in that handle
    i = 0
    for j, h in enumerate(handles):
        for k in range(len(h.avals)):
            source[i], leaf[i] = ("in", j), k
            i += 1
    for part in program.parts:
        for k, v in enumerate(part.outputs):
            source[v], leaf[v] = ("part", part.index), k
    last_read: dict[tuple[str, int], int] = {}
    for part in program.parts:
        for v in part.inputs:
            last_read[source[v]] = part.index
    handle_of: dict[tuple[str, int], Any] = {("in", j): h for j, h in enumerate(handles)}
    try:
        return _run_in_order(session, program, name, repeats, source, leaf, last_read, handle_of)
    finally:  # on failure too: nothing of the parts stays in the session
        for key, h in handle_of.items():
            if key[0] == "part":
                session.free(h)


def _run_in_order(session, program, name, repeats, source, leaf, last_read, handle_of):
    """:func:`_run_parts`' loop; ``handle_of`` keeps the live parts' handles (freed by the
    caller if this fails)."""
    import jax

    results: list[tuple[Any, Measured]] = []
    compile_s = 0.0
    for part in program.parts:
        srcs = list(dict.fromkeys(source[v] for v in part.inputs))  # handles read, in order
        pick = [(srcs.index(source[v]), leaf[v]) for v in part.inputs]
        body = part.function()

        def run(*values: Any, _pick=pick, _body=body) -> Any:
            leaves = [jax.tree_util.tree_leaves(v) for v in values]
            return _body(*[leaves[j][k] for j, k in _pick])

        run.__name__ = f"{name}.part{part.index}"
        hs = [handle_of[s] for s in srcs]
        out, m = _measure(session, lambda r=run, a=hs: session.call(r, *a, name=r.__name__),
                          repeats, wall=False)  # fmt: skip
        compile_s += m.compile_s
        results.append((part, m))
        me = ("part", part.index)
        if me in last_read:
            handle_of[me] = out
        else:  # read by no later part (a program output, or nothing)
            session.free(out)
        for s in srcs:  # free what no later part reads
            if s[0] == "part" and last_read[s] == part.index:
                session.free(handle_of.pop(s))
    return results, compile_s


@contextlib.contextmanager
def _flax_classes(found: dict[str, str]) -> Iterator[None]:
    """Record ``{module path: class name}`` of every Flax module called while tracing."""
    try:
        import flax.linen as nn
    except ImportError:  # pragma: no cover - flax is a dependency
        yield
        return

    def interceptor(next_fun, args, kwargs, context):
        mod = context.module
        scope = getattr(mod, "scope", None)
        path = getattr(scope, "path", None)
        if path is not None:
            found.setdefault(".".join(str(p) for p in path), type(mod).__name__)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        yield


def _converted(
    module: Any, args: tuple, kwargs: dict, route: str, index_lowering: str
) -> tuple[Any, dict[str, str], str]:
    """The converted model, ``{torch module path: class}`` and the root's class name."""
    from ..model import ConvertedModel

    if isinstance(module, ConvertedModel):
        root = str(module.source or "model").split(" ")[0].rsplit(".", 1)[-1]
        return module, {}, root
    import torch

    if not isinstance(module, torch.nn.Module):
        raise ProfileError(
            f"profile: expected a torch.nn.Module or a ConvertedModel, got {type(module).__name__}"
        )
    kinds = {name: type(m).__name__ for name, m in module.named_modules()}
    root = type(module).__name__
    if route == "flax":
        from ..converters.flax import to_flax

        return to_flax(module), {}, root
    from ..converters.fx import convert

    t_args = tuple(
        torch.as_tensor(np.asarray(a)) if not isinstance(a, torch.Tensor) else a for a in args
    )
    t_kwargs = {
        k: torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v
        for k, v in kwargs.items()
    }
    return convert(module, t_args, t_kwargs, index_lowering=index_lowering), kinds, root


def _as_array(x: Any) -> Any:
    """An example input as numpy in JAX's 32-bit types: the example only gives the program
    its shapes, so torch's int64 ids become int32 without a warning (a value int32 cannot
    hold is still an error, :func:`~ppml_torch.dtypes.cast_to_32bit`)."""
    from ..dtypes import CASTS_64_TO_32, cast_to_32bit

    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray) and x.dtype.name in CASTS_64_TO_32:
        return cast_to_32bit(x, "profile: an example input")
    return x


def _is_float(x: Any) -> bool:
    return np.issubdtype(np.dtype(getattr(x, "dtype", np.float32)), np.floating)

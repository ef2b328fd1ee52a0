"""SPU's in-process simulator, kept alive: one ``spu.Runtime`` per party, each in its own thread.

SPU's own ``Simulator`` re-shares every input and reveals every output on each call.  A
:class:`SpuSession` instead keeps one runtime per party for its whole life: a value is
secret-shared once by ``put`` and its shares stay in the parties' runtimes (under a variable
name per leaf) across any number of calls, until it is revealed or freed.

Compiled programs are cached per (function, input shapes/dtypes/visibilities); each call only
builds a new ``ExecutableProto`` naming the variables it reads and writes.  ``ir`` chooses what
SPU compiles (see :mod:`.compile`); both routes give the same SPU program.  A program compiled
elsewhere (an exported ``.mlir``) runs on the same machinery: :meth:`SpuSession.run_program`,
and :func:`run_exported` for the files ``ppml-torch export-stablehlo`` writes.

This module is the only place that builds SPU links and runtimes in-process and reads SPU's
communication log for them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import PUBLIC, Handle, RunReport, Session, to_32bit
from .comm import CommStats, SpuLogTap, link_totals
from .config import DEFAULT_IR, ConfigError, SessionConfig, spu_runtime_config

if TYPE_CHECKING:
    from .compile import SpuProgram

RUN_LOCK = threading.Lock()  # SPU's log is process-wide: one run at a time keeps figures apart

# ``put`` shares a large leaf in pieces of this many elements, then joins the pieces inside
# SPU with one local (communication-free) program.  Each piece's buffers (the fixed-point
# encoding, the shares, their serialized copies: about 16 MiB) then fit under glibc's mmap
# threshold and are reused from piece to piece instead of being fresh pages from the kernel:
# with whole leaves, zeroing and faulting fresh pages was over 40% of ``put`` (perf, 20M
# floats, ABY3), and GPT-2-small's 124M weights took 42 s to share.
PUT_PIECE = 1 << 20
_MALLOC_TUNED = False
# Secrets are split into shares by :class:`.shares.ShareMaker` (numpy, 3x faster than SPU's
# ``make_shares`` on GPT-2-small's weights) where it reproduces SPU's shares; False: always
# SPU's ``make_shares`` (``bench/bench_put.py`` compares the two).
BUILD_SHARES = True


def _keep_freed_memory() -> None:
    """Let glibc keep up to 256 MiB of freed heap for reuse (allocations up to 32 MiB).

    glibc's defaults return freed memory above 128 KiB to the kernel at once, so every piece
    of a ``put`` faults in fresh zeroed pages.  Process-wide and set once, on the first
    ``put`` of an in-process SPU session; a no-op where the C library has no ``mallopt``.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    mallopt(m_trim_threshold, 256 << 20)
    mallopt(m_mmap_threshold, 32 << 20)


def in_party_threads(fn: Callable[[int], Any], n: int) -> list[Any]:
    """Run ``fn(rank)`` for every rank concurrently (the parties talk to each other)."""
    results: list[Any] = [None] * n
    errors: list[BaseException | None] = [None] * n

    def body(rank: int) -> None:
        try:
            results[rank] = fn(rank)
        except BaseException as e:  # noqa: BLE001 - re-raised below in the caller's thread
            errors[rank] = e

    threads = [threading.Thread(target=body, args=(r,), daemon=True) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        if e is not None:
            raise e
    return results


class SpuSession(Session):
    def __init__(self, config: SessionConfig, *, profile: bool = True, ir: str = DEFAULT_IR):
        super().__init__(config)
        self.ir = ir
        import spu.api as spu_api
        from spu import libspu, spu_pb2

        self._pb = spu_pb2
        self._profile = profile
        self._tap = SpuLogTap.get() if profile else None
        self._rc = spu_runtime_config(config, profile=profile)
        n = len(config.parties)
        self._io = spu_api.Io(n, self._rc)
        desc = libspu.link.Desc()
        desc.id = f"ppml-torch-{id(self)}-{self.id}"  # sessions in one process never cross-talk
        desc.recv_timeout_ms = 3600 * 1000  # a party may wait long while another computes
        for party in config.parties:
            desc.add_party(party, f"thread_{party}")
        links = [libspu.link.create_mem(desc, r) for r in range(n)]
        # Runtime construction exchanges messages between parties: build them concurrently.
        self._rts = in_party_threads(lambda r: spu_api.Runtime(links[r], self._rc), n)
        self._compiled: dict[Any, tuple[bytes, Any, str]] = {}
        self._vis: dict[int, list[int]] = {}
        self._maker: Any = None  # .shares.ShareMaker, made at the first secret put

    # -- values --------------------------------------------------------------------------------
    @staticmethod
    def _names(handle: Handle) -> list[str]:
        return [f"v{handle.key}.{i}" for i in range(len(handle.avals))]

    def _put(self, handle: Handle, arrays: list[np.ndarray]) -> None:
        pb = self._pb
        if handle.visibility == PUBLIC:
            vis, owner_rank = pb.Visibility.VIS_PUBLIC, -1
        else:
            vis, owner_rank = pb.Visibility.VIS_SECRET, self.parties.index(handle.owner)
        _keep_freed_memory()
        names = self._names(handle)
        # largest leaves first: a leaf shared in pieces briefly exists twice (pieces and their
        # join), best while little else is held (GPT-2-small: the 38.6M-weight embedding first,
        # not on top of the other 86M weights' shares)
        for i in sorted(range(len(arrays)), key=lambda i: -arrays[i].size):
            name, arr = names[i], arrays[i]
            if arr.size <= PUT_PIECE:
                self._share(name, arr, vis, owner_rank)
            else:
                self._share_in_pieces(name, arr, vis, owner_rank)
        self._vis[handle.key] = [vis] * len(arrays)

    def _share(self, name: str, arr: np.ndarray, vis: int, owner_rank: int) -> None:
        shares = None
        if BUILD_SHARES and vis == self._pb.Visibility.VIS_SECRET:
            if self._maker is None:
                from .shares import ShareMaker

                cfg = self.config
                self._maker = ShareMaker(
                    self._io, cfg.protocol, cfg.field, self._rc.fxp_fraction_bits
                )
            shares = self._maker.make(arr, vis)
        if shares is None:  # public values, other protocols, fields and dtypes: SPU's own
            shares = self._io.make_shares(arr, vis, owner_rank)
        for rt, share in zip(self._rts, shares, strict=True):
            rt.set_var(name, share)

    def _share_in_pieces(self, name: str, arr: np.ndarray, vis: int, owner_rank: int) -> None:
        """Share ``arr`` in pieces of :data:`PUT_PIECE` elements, joined inside SPU.

        The join is a concatenation of each party's own shares: local, exact, no messages.
        """
        flat = arr.reshape(-1)
        pieces = [flat[s : s + PUT_PIECE] for s in range(0, flat.size, PUT_PIECE)]
        names = [f"{name}.p{j}" for j in range(len(pieces))]
        for piece_name, piece in zip(names, pieces, strict=True):
            self._share(piece_name, piece, vis, owner_rank)
        program = self._join_program(arr.shape, arr.dtype, [p.size for p in pieces], vis)
        exe = self._pb.ExecutableProto(
            name=program.name, input_names=names, output_names=[name], code=program.code
        )
        with RUN_LOCK:  # keeps SPU's communication log of other runs apart (none is sent)
            in_party_threads(lambda r: self._rts[r].run(exe), len(self._rts))
        for piece in names:
            for rt in self._rts:
                rt.del_var(piece)

    def _join_program(
        self, shape: tuple[int, ...], dtype: Any, sizes: list[int], vis: int
    ) -> SpuProgram:
        from .compile import compile_for_spu

        key = ("join", tuple(shape), np.dtype(dtype).str, tuple(sizes), vis)
        program = self._compiled.get(key)
        if program is None:
            import jax
            import jax.numpy as jnp

            def join(*pieces):
                return jnp.concatenate(pieces).reshape(shape)

            structs = [jax.ShapeDtypeStruct((n,), dtype) for n in sizes]
            program = compile_for_spu(join, structs, [vis] * len(sizes), ir=self.ir, name="put")
            self._compiled[key] = program
        return program

    def _reveal(self, handle: Handle, to: str | None) -> list[np.ndarray]:
        # In-process every party's shares are in this process; ``to`` names who would receive
        # them over the network in a deployment (see runners/secretflow/ for real placement).
        return [
            np.asarray(self._io.reconstruct([rt.get_var(name) for rt in self._rts]))
            for name in self._names(handle)
        ]

    def _free(self, handle: Handle) -> None:
        for name in self._names(handle):
            for rt in self._rts:
                rt.del_var(name)
        self._vis.pop(handle.key, None)

    def _close(self) -> None:
        self._rts = []  # dropping the runtimes frees every party's shares
        self._compiled.clear()

    # -- calls ---------------------------------------------------------------------------------
    def run_program(
        self, program: SpuProgram, *args: Handle, name: str | None = None, compile_s: float = 0.0
    ) -> Handle:
        """Run an already compiled :class:`~.compile.SpuProgram` on handles; returns a handle.

        The handles' arrays, flattened in order, must match the program's inputs in shape,
        dtype and visibility (a value put by a party is secret, ``owner='public'`` public).
        ``compile_s`` is what compiling the program cost, for the run report.
        """
        self._check_open()
        where = f"run_program({program.name})"
        self._check_args(args, where)
        avals = [(v, a) for a in args for v in zip(a.avals, self._vis[a.key], strict=True)]
        if len(avals) != len(program.in_avals):
            raise ConfigError(
                f"{where}: {len(avals)} input arrays for a program reading "
                f"{len(program.in_avals)}; pass handles holding exactly its inputs, in order"
            )
        for i, (((got, vis), _), want, want_vis) in enumerate(
            zip(avals, program.in_avals, program.visibilities, strict=True)
        ):
            if tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype:
                raise ConfigError(
                    f"{where}: input {i} is {got.dtype}{list(got.shape)}, the program reads "
                    f"{want.dtype}{list(want.shape)}; put an array of that shape and dtype"
                )
            if vis != want_vis:
                names = {
                    self._pb.Visibility.VIS_SECRET: "secret",
                    self._pb.Visibility.VIS_PUBLIC: "public",
                }
                raise ConfigError(
                    f"{where}: input {i} is {names.get(vis, vis)}, the program was compiled for "
                    f"a {names.get(want_vis, want_vis)} input; compile with the inputs' visibilities"
                )
        handle, report = self._execute(program, args, name or program.name, compile_s)
        self._live.add(handle.key)
        self._record(report)
        return handle

    def _compile(
        self, fn: Callable[..., Any], args: Sequence[Handle], in_vis: list[int], name: str
    ) -> tuple[SpuProgram, float]:
        from .compile import compile_for_spu

        sig = (fn, tuple((a.treedef, a.avals) for a in args), tuple(in_vis))
        program = self._compiled.get(sig)
        if program is not None:
            return program, 0.0
        t0 = time.perf_counter()
        program = compile_for_spu(fn, [a.structure for a in args], in_vis, ir=self.ir, name=name)
        self._compiled[sig] = program
        return program, time.perf_counter() - t0

    def _call(
        self, fn: Callable[..., Any], args: Sequence[Handle], name: str
    ) -> tuple[Handle, RunReport]:
        in_vis = [v for a in args for v in self._vis[a.key]]
        program, compile_s = self._compile(fn, args, in_vis, name)
        return self._execute(program, args, name, compile_s)

    def _execute(
        self, program: SpuProgram, args: Sequence[Handle], name: str, compile_s: float
    ) -> tuple[Handle, RunReport]:
        """Run ``program`` on the parties' variables of ``args``; the outputs stay shared."""
        handle = self._new_handle(program.out_struct)
        exe = self._pb.ExecutableProto(
            name=program.name,
            input_names=[n for a in args for n in self._names(a)],
            output_names=self._names(handle),
            code=program.code,
        )
        with RUN_LOCK:
            mark = self._tap.mark() if self._tap else 0
            t0 = time.perf_counter()
            in_party_threads(lambda r: self._rts[r].run(exe), len(self._rts))
            run_s = time.perf_counter() - t0
            comm = None
            if self._tap:
                comm = CommStats(*link_totals(self._tap.read_since(mark)))
        meta = [self._rts[0].get_var_meta(n) for n in self._names(handle)]
        self._vis[handle.key] = [m.visibility for m in meta]
        return handle, RunReport("spu", name, compile_s, run_s, comm)


def run_exported(
    session: Session,
    path: str | Path,
    inputs: Mapping[str, Any],
    *,
    weights_owner: str,
    inputs_owner: str,
    reveal_to: str | None = None,
) -> dict[str, np.ndarray]:
    """Run a program written by ``ppml-torch export-stablehlo`` in an SPU session.

    ``path`` is the ``.mlir`` (or its ``.json`` manifest); the weights come from the
    ``.safetensors`` beside it and enter as ``weights_owner``'s secret (or public with
    ``'public'``); ``inputs`` maps the manifest's other input names (``args[0]``,
    ``kwargs['input_ids']``) to arrays, which enter as ``inputs_owner``'s.  Every input is
    checked against the manifest, and the program compiled, before anything is secret-shared.
    Returns the revealed outputs keyed by manifest name (``out``, ``out['logits']``); the cost
    is ``session.last_report``.
    """
    from ..stablehlo import read_export
    from .base import check_owners
    from .compile import compile_export

    if not isinstance(session, SpuSession):
        raise ConfigError(
            f"run_exported needs an 'spu' session, got {session!r}; "
            "open one with open_session('spu', ...)"
        )
    check_owners(session.parties, (weights_owner, inputs_owner), None, "run_exported")
    export = read_export(path)
    weights, data = [], []
    names = [e["name"] for e in export.inputs]
    unknown = sorted(set(inputs) - set(names))
    if unknown:
        raise ConfigError(
            f"run_exported: {unknown} are not inputs of {export.mlir_path.name}; "
            f"its inputs are {[n for n in names if not n.startswith('params[')]}"
        )
    for entry in export.inputs:
        w = export.weight_of(entry["name"])
        if w is not None:
            if data:
                raise ConfigError(
                    f"run_exported: {export.mlir_path.name} reads weight {entry['name']} after a "
                    "model input; only exports with the weights first are supported, re-export it"
                )
            weights.append(w)
            continue
        if entry["name"] not in inputs:
            raise ConfigError(
                f"run_exported: no value for input {entry['name']} "
                f"({entry['dtype']}{entry['shape']}); pass it in inputs={{...}}"
            )
        x = to_32bit(inputs[entry["name"]], f"run_exported({entry['name']})")
        if list(x.shape) != entry["shape"] or str(x.dtype) != entry["dtype"]:
            raise ConfigError(
                f"run_exported: input {entry['name']} is {x.dtype}{list(x.shape)}, the program "
                f"reads {entry['dtype']}{entry['shape']}"
            )
        data.append(x)
    vis = ["public" if o == PUBLIC else "secret" for o in (weights_owner, inputs_owner)]
    t0 = time.perf_counter()
    program = compile_export(export, [vis[0]] * len(weights) + [vis[1]] * len(data))
    compile_s = time.perf_counter() - t0
    handles = []
    if weights:
        handles.append(session.put(weights, owner=weights_owner))
    if data:
        handles.append(session.put(data, owner=inputs_owner))
    out = session.run_program(program, *handles, compile_s=compile_s)
    try:
        values = session.reveal(out, to=reveal_to)
    finally:
        for h in (*handles, out):
            session.free(h)
    return {e["name"]: np.asarray(v) for e, v in zip(export.outputs, values, strict=True)}

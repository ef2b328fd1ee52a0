"""SPU's in-process simulator, kept alive: one ``spu.Runtime`` per party, each in its own thread.

SPU's own ``Simulator`` re-shares every input and reveals every output on each call.  A
:class:`SpuSession` instead keeps one runtime per party for its whole life: a value is
secret-shared once by ``put`` and its shares stay in the parties' runtimes (under a variable
name per leaf) across any number of calls, until it is revealed or freed.

Compiled programs are cached per (function, input shapes/dtypes/visibilities); each call only
builds a new ``ExecutableProto`` naming the variables it reads and writes.  ``ir`` chooses what
SPU compiles: ``"xla"`` (SPU's own JAX frontend, an HLO proto) or ``"stablehlo"`` (JAX's
StableHLO text; see docs/stablehlo.md); both give the same SPU program.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .base import PUBLIC, Handle, RunReport, Session
from .comm import CommStats, SpuLogTap, parse_link_lines
from .config import SessionConfig, spu_runtime_config

RUN_LOCK = threading.Lock()  # SPU's log is process-wide: one run at a time keeps figures apart


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
    def __init__(self, config: SessionConfig, *, profile: bool = True, ir: str = "xla"):
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
        for name, arr in zip(self._names(handle), arrays, strict=True):
            shares = self._io.make_shares(arr, vis, owner_rank)
            for rt, share in zip(self._rts, shares, strict=True):
                rt.set_var(name, share)
        self._vis[handle.key] = [vis] * len(arrays)

    def _reveal(self, handle: Handle, to: str | None) -> list[np.ndarray]:
        # In-process every party's shares are in this process; ``to`` names who would receive
        # them over the network in a deployment (see runners/secretflow.py for real placement).
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
    def _compile(
        self, fn: Callable[..., Any], args: Sequence[Handle], in_vis: list[int], name: str
    ):
        from ppml_torch.converters.fx.stablehlo import compile_for_spu

        sig = (fn, tuple((a.treedef, a.avals) for a in args), tuple(in_vis))
        entry = self._compiled.get(sig)
        if entry is not None:
            return entry, 0.0
        t0 = time.perf_counter()
        program = compile_for_spu(fn, [a.structure for a in args], in_vis, ir=self.ir, name=name)
        entry = (program.code, program.out_struct, program.executable.name)
        self._compiled[sig] = entry
        return entry, time.perf_counter() - t0

    def _call(
        self, fn: Callable[..., Any], args: Sequence[Handle], name: str
    ) -> tuple[Handle, RunReport]:
        in_names = [n for a in args for n in self._names(a)]
        in_vis = [v for a in args for v in self._vis[a.key]]
        (code, out_struct, exe_name), compile_s = self._compile(fn, args, in_vis, name)
        handle = self._new_handle(out_struct)
        exe = self._pb.ExecutableProto(
            name=exe_name, input_names=in_names, output_names=self._names(handle), code=code
        )
        with RUN_LOCK:
            mark = self._tap.mark() if self._tap else 0
            t0 = time.perf_counter()
            in_party_threads(lambda r: self._rts[r].run(exe), len(self._rts))
            run_s = time.perf_counter() - t0
            comm = None
            if self._tap:
                lines = parse_link_lines(self._tap.read_since(mark))
                comm = CommStats(sum(b for b, _ in lines), sum(a for _, a in lines), None)
        meta = [self._rts[0].get_var_meta(n) for n in self._names(handle)]
        self._vis[handle.key] = [m.visibility for m in meta]
        return handle, RunReport("spu", name, compile_s, run_s, comm)

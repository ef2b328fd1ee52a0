"""Every change ppml-torch makes to SecretFlow, SPU and Ray, and the check that each still fits.

Written for secretflow 1.11.0b1, spu 0.9.3b0 and ray 2.9.3 (``requirements/lock.txt``).  Each
patch copies or replaces code of those versions, or relies on their internals; the code it
was made from is declared as a :class:`Target` (where it is, and a fingerprint of its source),
and checked before the patch is used: :func:`check` at the start of every SecretFlow session,
and again by each patch when it is applied.  A target that is gone or whose source differs is
one line (:class:`PatchError`) naming the version to install, before anything connects.

The patches:

* :func:`runtime_class`: SecretFlow's ``SPURuntime`` whose SPU link retries a failing send for
  longer (:func:`slow_retries`): a copy of ``SPURuntime.__init__``;
* :func:`spu_device_class`: SecretFlow's ``SPU`` device with one SPU log file per party and a
  runtime class of our choice: a copy of ``SPU.init``;
* :func:`cross_silo_link`: the cross-silo brpc link's ``start`` with the same retries, and SSL
  turned on with TLS;
* :func:`links_stopped_then_linger`: its ``stop``: yacl's closing handshake, then a linger;
* :func:`ship_models_as_programs`, :func:`ship_by_value`: how Ray pickles functions for the
  simulation's workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import inspect
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..config import ConfigError

SECRETFLOW = "1.11.0b1"
SPU = "0.9.3b0"
RAY = "2.9.3"

_DEVICE = "secretflow.device.device.spu"
_BRPC_LINK = "secretflow.distributed.fed.proxy.brpc_link.brpc_link"


class PatchError(ConfigError):
    """The installed SecretFlow/SPU/Ray differs from what a patch of ppml-torch was made for."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A function or attribute of a dependency that a patch copies, replaces or relies on.

    ``sha256``: the first 16 hex digits of the SHA-256 of its source (dedented), as in
    ``package`` ``version``; ``None`` for native code or a public API, whose presence is
    checked only."""

    package: str
    version: str
    module: str
    name: str  # dotted inside the module, e.g. "SPURuntime.__init__"
    sha256: str | None = None

    def fix(self) -> str:
        return (
            f"install {self.package}=={self.version} (requirements/lock.txt: `make setup`) or "
            "update ppml_torch/runners/secretflow/patches.py"
        )

    def resolve(self) -> Any:
        """The object itself; :class:`PatchError` if it is gone."""
        try:
            obj = importlib.import_module(self.module)
            for part in self.name.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            raise PatchError(
                f"ppml-torch patches {self.package} {self.version}'s {self.name} "
                f"({self.module}), which {_installed(self.package)} does not have; {self.fix()}"
            ) from None
        return obj

    def check(self) -> Any:
        """:meth:`resolve`, and the source must be the one the patch was made from."""
        obj = self.resolve()
        if self.sha256 is not None and fingerprint(obj) != self.sha256:
            raise PatchError(
                f"ppml-torch patches {self.package} {self.version}'s {self.name} "
                f"({self.module}), whose code differs in {_installed(self.package)}; {self.fix()}"
            )
        return obj


def fingerprint(obj: Any) -> str:
    """The first 16 hex digits of the SHA-256 of ``obj``'s source, dedented."""
    source = textwrap.dedent(inspect.getsource(obj))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _installed(package: str) -> str:
    from importlib import metadata

    try:
        return f"the installed {package} {metadata.version(package)}"
    except metadata.PackageNotFoundError:
        return f"this environment (no {package} installed)"


def _sf(name: str, sha256: str | None, module: str = _DEVICE) -> Target:
    return Target("secretflow", SECRETFLOW, module, name, sha256)


def _spu(name: str) -> Target:
    return Target("spu", SPU, "spu.libspu.link", name)


SPU_RUNTIME_INIT = _sf("SPURuntime.__init__", "e2aa59d0598ec4c6")
FILL_LINK_DESC = _sf("_fill_link_desc_attrs", "77e8c8122de8898a")  # our copy calls it as is
SPU_DEVICE_INIT = _sf("SPU.init", "e2fa56cb1df160ff")
PROXY_INIT = _sf("BrpcLinkProxy.__init__", "4b2fa1e822d9d137", _BRPC_LINK)  # fills ._desc
PROXY_START = _sf("BrpcLinkProxy.start", "6f1fe0ae37e80f42", _BRPC_LINK)
PROXY_STOP = _sf("BrpcLinkProxy.stop", "975cd14ebfc0da20", _BRPC_LINK)  # owns ._linker
RETRY_OPTIONS = tuple(
    _spu(f"RetryOptions.{a}")
    for a in ("max_retry", "retry_interval_ms", "retry_interval_incr_ms", "max_retry_interval_ms")
)
LINK_DESC = (_spu("Desc.retry_opts"), _spu("Desc.enable_ssl"), _spu("Context.stop_link"))
RAY_SERIALIZERS = tuple(
    Target("ray", RAY, m, n)
    for m, n in (
        ("ray.util", "register_serializer"),
        ("ray.util", "deregister_serializer"),
        ("ray.cloudpickle", "register_pickle_by_value"),
    )
)

SIMULATION = (SPU_DEVICE_INIT, *RAY_SERIALIZERS)
PRODUCTION = (
    SPU_RUNTIME_INIT,
    FILL_LINK_DESC,
    SPU_DEVICE_INIT,
    PROXY_INIT,
    PROXY_START,
    PROXY_STOP,
    *RETRY_OPTIONS,
    *LINK_DESC,
)


def check(targets: tuple[Target, ...]) -> None:
    """Every target as the patches expect it (one :class:`PatchError` line if not).  Cheap
    (a source file read and hashed per target), so each patch checks again when applied."""
    for t in targets:
        t.check()


# -- the SPU runtime and device ----------------------------------------------------------------


def slow_retries(desc: Any, timeout_ms: int) -> None:
    """A failing send (the peer is gone) keeps being retried, once a second, for three times
    the bound.

    yacl's link ends the whole process (exit code 255, no message) when an asynchronous send
    has used up its retries (default: 3 within about 15 s).  Retrying for longer lets the
    watchdog or the receive timeout give the user the one-line error first; retrying every
    second keeps start-up quick (the first handshake is retried until the peer listens).
    """
    check(RETRY_OPTIONS)
    r = desc.retry_opts
    r.max_retry = 3 * max(1, timeout_ms // 1000) + 1
    r.retry_interval_ms = 1000
    r.retry_interval_incr_ms = 0
    r.max_retry_interval_ms = 1000


def runtime_class(timeout_ms: int) -> type:
    """SecretFlow's SPURuntime, with the link's send retries of :func:`slow_retries`."""
    import json

    import spu
    import spu.libspu.link as spu_link
    import spu.libspu.logging as spu_logging
    from google.protobuf import json_format

    check((SPU_RUNTIME_INIT, FILL_LINK_DESC, *RETRY_OPTIONS))
    from secretflow.device.device.spu import SPURuntime, _fill_link_desc_attrs

    class _Runtime(SPURuntime):
        def __init__(self, rank, cluster_def, link_desc=None, log_options=None, id=None):  # noqa: A002
            # SPURuntime.__init__ of secretflow 1.11.0b1, plus the retry options
            spu_logging.setup_logging(log_options or spu_logging.LogOptions())
            self.rank = rank
            self.cluster_def = cluster_def
            desc = spu_link.Desc()
            tls_opts = None
            for i, node in enumerate(cluster_def["nodes"]):
                address = node["address"]
                if i == rank:
                    self.party = node["party"]
                    tls_opts = node.get("tls_opts", None)
                    if node.get("listen_address", ""):
                        address = node["listen_address"]
                desc.add_party(node["party"], address)
            _fill_link_desc_attrs(link_desc=link_desc, tls_opts=tls_opts, desc=desc)
            slow_retries(desc, timeout_ms)
            self.link = spu_link.create_brpc(desc, rank)
            self.conf = json_format.Parse(
                json.dumps(cluster_def["runtime_config"]), spu.RuntimeConfig()
            )
            self.runtime = spu.Runtime(self.link, self.conf)
            self.share_seq_id = 0
            self.id = id

    return _Runtime


def spu_device_class(log_path: Callable[[str], str | None], runtime: type | None = None) -> type:
    """SecretFlow's SPU device whose party ``p`` logs to ``log_path(p)`` (SPU's console when
    ``None``), each party's runtime an instance of ``runtime`` (default SecretFlow's
    ``SPURuntime``): ``SPU.init`` of secretflow 1.11.0b1 with these two choices."""
    import secretflow as sf
    from secretflow.distributed import primitive as sfd
    from spu import libspu

    check((SPU_DEVICE_INIT,))
    from secretflow.device.device.spu import SPURuntime

    runtime_cls = runtime or SPURuntime

    class _SPU(sf.SPU):
        """SecretFlow's SPU device with one log file per party (for communication figures)."""

        def init(self) -> None:
            for rank, node in enumerate(self.cluster_def["nodes"]):
                opts = libspu.logging.LogOptions()
                path = log_path(node["party"])
                if path is not None:
                    opts.enable_console_logger = False
                    opts.system_log_path = path
                self.actors[node["party"]] = (
                    sfd.remote(runtime_cls)
                    .party(node["party"])
                    .remote(rank, self.cluster_def, self.link_desc, opts, self.id)
                )

    return _SPU


# -- the cross-silo link (production mode) -----------------------------------------------------


@contextlib.contextmanager
def cross_silo_link(timeout_ms: int, tls: bool) -> Iterator[None]:
    """:func:`slow_retries` for SecretFlow's cross-silo brpc link, created inside sf.init.

    With ``tls``, also turn SSL on: secretflow 1.11.0b1's brpc_link proxy fills the link's
    certificate options from ``tls_config`` but never sets ``enable_ssl``, so the channel ran
    in plaintext and a party with a certificate of another CA was accepted (measured).
    """
    check((PROXY_INIT, PROXY_START, *LINK_DESC))
    proxy_cls = importlib.import_module(_BRPC_LINK).BrpcLinkProxy
    orig = proxy_cls.start

    def start(proxy: Any) -> Any:
        slow_retries(proxy._desc, timeout_ms)
        if tls:
            proxy._desc.enable_ssl = True
        return orig(proxy)

    proxy_cls.start = start
    try:
        yield
    finally:
        proxy_cls.start = orig


LINGER_S = 1.0  # after the closing handshake, how long a party keeps answering the others


def keep_until_exit(obj: Any) -> None:
    """One more reference to ``obj`` that nothing ever drops: its destructor never runs, not
    even while the interpreter finalizes (a module-level list would be cleared then)."""
    import ctypes

    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


@contextlib.contextmanager
def links_stopped_then_linger() -> Iterator[None]:
    """``sf.shutdown`` with the cross-silo link closed by yacl's handshake, then kept up a moment.

    yacl acknowledges every message it receives with a message of its own, sent asynchronously,
    and its ``stop_link`` is the closing handshake that waits for all of them (each party sends
    FIN with its message count, waits for every peer's messages and FIN, for its own sends to be
    delivered and for the acknowledgements of its own messages).  Afterwards this party sends
    nothing more; but its server must still answer the peers' last requests (their FIN, their
    last acknowledgement): closing it right away cuts those answers off, the peer retries a
    send that nobody answers, and a process that exits while such a send task runs crashes in
    brpc/yacl's threads during C++ static destruction (SIGSEGV in spdlog, 2 of 20 three-party
    launches on a loaded machine when the link was dropped without the handshake).  So: the
    handshake, then ``LINGER_S`` with the server up; the link object itself is never
    destroyed (:func:`keep_until_exit`): releasing it waits for its send tasks while holding
    Python's lock, and a send still retrying to a party that is gone made that wait endless (2
    of 11 two-party launches on a loaded machine hung there, every thread stopped, the watchdog
    too).  A party process of the command line then ends without C++ static destructors
    (:func:`ppml_torch.cli.main`), so no send task meets a destroyed logger either.
    """
    check((PROXY_STOP, *LINK_DESC))
    proxy_cls = importlib.import_module(_BRPC_LINK).BrpcLinkProxy
    orig = proxy_cls.stop

    def stop(proxy: Any) -> None:
        if proxy._linker is not None:
            proxy._linker.stop_link()
            time.sleep(LINGER_S)
            keep_until_exit(proxy._linker)
            proxy._linker = None

    proxy_cls.stop = stop
    try:
        yield
    finally:
        proxy_cls.stop = orig


# -- Ray's pickling (simulation mode) ------------------------------------------------------------


def ship_by_value(fn: Callable[..., Any]) -> None:
    """Let Ray workers unpickle ``fn`` even when its module is not importable there.

    Ray pickles functions by reference to their module; a user's script or a test module is
    not on the workers' path, so such modules are pickled by value instead.
    """
    import sys

    from ray import cloudpickle

    check(RAY_SERIALIZERS)

    mod_name = getattr(getattr(fn, "func", fn), "__module__", None)
    module = sys.modules.get(mod_name or "")
    path = getattr(module, "__file__", None) or ""
    if module is None or mod_name == "__main__" or mod_name.split(".")[0] == "ppml_torch":
        return
    if "site-packages" in path or not path:
        return
    try:
        cloudpickle.register_pickle_by_value(module)
    except ValueError:
        pass  # already registered


def ship_models_as_programs(on: bool) -> None:
    """While a simulation session is open, Ray pickles a ``ConvertedModel`` as its program only
    (:func:`ppml_torch.model.shipping_state`: its weights as shapes and dtypes, without torch's
    ``ExportedProgram``); Ray's registry of serializers is per process."""
    import ray

    from ...model import ConvertedModel, from_shipping_state, shipping_state

    check(RAY_SERIALIZERS)
    if on:
        ray.util.register_serializer(
            ConvertedModel, serializer=shipping_state, deserializer=from_shipping_state
        )
    else:
        ray.util.deregister_serializer(ConvertedModel)

"""What a third-party library leaves in the temporary folder, removed when the process ends.

JAX 0.4.26 makes an empty folder (``tempfile.mkdtemp()``, for GPU autotuning configurations
that a CPU run never writes) in every process that imports ``jax/_src/compiler.py``, and never
removes it: one ``/tmp/tmpXXXXXXXX`` per process (each party of a launch, each test worker).
:func:`remove_at_exit` (called when a session opens) removes it when the interpreter exits;
:func:`remove_now` is for processes that end with ``os._exit`` (a party of the command line).
Only an empty folder is removed: anything written there is left as it is.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys

_registered = False


def jax_autotune_dir() -> str | None:
    """The folder JAX made at import, or ``None`` (JAX not imported, or another version)."""
    compiler = sys.modules.get("jax._src.compiler")
    fn = getattr(compiler, "_compile_and_write_autotune_config", None)
    path = getattr(fn, "autotune_configs_dir", None)
    return path if isinstance(path, str) else None


def remove_now() -> None:
    path = jax_autotune_dir()
    if path is not None:
        with contextlib.suppress(OSError):  # gone already, or not empty: leave it
            os.rmdir(path)


def remove_at_exit() -> None:
    global _registered
    if not _registered:
        _registered = True
        atexit.register(remove_now)

"""Backend ``secretflow``: SecretFlow and SPU, in one process or one process per party.

| module | what |
| --- | --- |
| :mod:`.simulation` | ``SecretFlowSession``: every party in this process, on a local Ray cluster |
| :mod:`.production` | ``ProductionSession``: this process is one party (``cluster=``, ``party=``); put, call, reveal, announce |
| :mod:`.cluster` | the cluster file, checked before anything connects |
| :mod:`.startup` | ``PartyRuntime``: a party's SecretFlow runtime started (``sf.init``, agreement, SPU link) and closed |
| :mod:`.devices` | the ``PYU`` s and the ``SPU`` device of both modes, the link settings |
| :mod:`.supervision` | start-up guard, watchdog (lost parties, the launcher's news, TLS handshakes), signals, exit after a lost party |
| :mod:`.startup_guard` | the guard's process (standard library only) |
| :mod:`.failures` | ``PartyLostError``: runtime failures as one line naming the party |
| :mod:`.tls` | this party's TLS files checked with ``ssl`` before start-up; brpc's handshake failures in one line |
| :mod:`.scratch` | temporary folders, removed on every exit path |
| :mod:`.janitor` | the process that removes them (and ends a launcher's parties) when this one has ended (standard library only) |
| :mod:`.patches` | every change to SecretFlow/SPU/Ray, each checked against the version it is for |
| :mod:`.logs` | SecretFlow's, Ray's and native output to a log file; SPU's per-party logs |
| :mod:`.launcher` | ``launch``: one process per party on this machine (``ppml-torch launch``); its news to the parties |

Nothing here imports SecretFlow until a session opens.
"""

from __future__ import annotations

from ..config import ConfigError


def check_importable() -> None:
    """Fail fast, with the fix, when SecretFlow is not installed."""
    import importlib.util

    if importlib.util.find_spec("secretflow") is None:
        raise ConfigError(
            "backend 'secretflow' needs the secretflow package, which is not importable here; "
            "run `make setup` (installs requirements/lock.txt) or use backend='spu'"
        )

"""Where SecretFlow's and native output goes, and SPU's per-party logs
(runners/secretflow/logs.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from ppml_torch.runners.comm import CommStats
from ppml_torch.runners.secretflow.logs import SpuLogs


def _line(send: int, actions: int) -> str:
    return (
        f"Link details: total send bytes {send}, recv bytes 1, send actions {actions}, "
        "recv actions 1\n"
    )


def test_spu_logs_count_what_each_party_logged_since_the_mark(tmp_path):
    """Catches figures that include earlier runs (the mark ignored) or mix up parties."""
    logs = SpuLogs(str(tmp_path), {"alice": "alice.log", "bob": "bob.log"})
    assert logs.path("bob") == str(tmp_path / "bob.log")
    (tmp_path / "alice.log").write_text(_line(1000, 10))  # an earlier run
    marks = logs.mark()
    assert marks == {"alice": len(_line(1000, 10)), "bob": 0}
    with open(tmp_path / "alice.log", "a") as f:
        f.write(_line(7, 2) + "other text\n" + _line(3, 1))
    (tmp_path / "bob.log").write_text(_line(5, 4))
    assert logs.comm_since(marks) == CommStats(15, 7, {"alice": (10, 3), "bob": (5, 4)})


def test_without_profile_there_are_no_figures():
    logs = SpuLogs.create("unused-", {"alice": "spu.log"}, profile=False)
    assert logs.folder is None and logs.path("alice") is None
    assert logs.mark() == {} and logs.comm_since({}) is None


NATIVE = """
import os, sys
from ppml_torch.runners.secretflow.logs import NativeLogs
native = NativeLogs()
os.write(2, b"native line\\n")  # what brpc's threads write
print("to the user", file=sys.stderr, flush=True)
os.write(native.console_stderr, b"one-line error\\n")
native.restore()
os.write(2, b"after restore\\n")
print(native.path)
"""


def test_native_output_goes_to_the_log_and_python_output_to_the_console(tmp_path):
    """Catches brpc's lines reaching the user's console, or the user's lines lost."""
    env = dict(os.environ, TMPDIR=str(tmp_path))  # the log file in tmp_path, not /tmp
    done = subprocess.run(
        [sys.executable, "-c", NATIVE], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "to the user\none-line error\nafter restore\n"
    log = done.stdout.strip()
    assert os.path.dirname(log) == str(tmp_path)
    with open(log) as f:
        assert f.read() == "native line\n"

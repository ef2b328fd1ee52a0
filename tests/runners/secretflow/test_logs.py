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
    logs = SpuLogs(None, {"alice": "spu.log"})
    assert logs.folder is None and logs.path("alice") is None
    assert logs.mark() == {} and logs.comm_since({}) is None


NATIVE = """
import os, sys
from ppml_torch.runners.secretflow.logs import NativeLogs, keep_log, read_log
native = NativeLogs()
os.write(2, b"native line\\n")  # what brpc's threads write
print("to the user", file=sys.stderr, flush=True)
os.write(native.console_stderr, b"one-line error\\n")
native.restore()
os.write(2, b"after restore\\n")
ours = [n for n in os.listdir(os.environ["TMPDIR"]) if n.startswith("ppml-torch-")]
print(ours, read_log(), read_log(7))
print(keep_log(sys.argv[1]))
"""


def test_native_output_goes_to_the_log_and_python_output_to_the_console(tmp_path):
    """Catches brpc's lines reaching the user's console, the user's lines lost, or the log
    left in the temporary folder (its name is removed as soon as it is open)."""
    (tmp_path / "tmp").mkdir()
    (tmp_path / "kept").mkdir()
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"))
    done = subprocess.run(
        [sys.executable, "-c", NATIVE, str(tmp_path / "kept")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "to the user\none-line error\nafter restore\n"
    listed, kept = done.stdout.splitlines()
    assert listed == "[] b'native line\\n' b'line\\n'"
    assert kept == str(tmp_path / "kept" / "console.log")
    assert (tmp_path / "kept" / "console.log").read_text() == "native line\n"
    assert [n for n in os.listdir(tmp_path / "tmp") if n.startswith("ppml-torch-")] == []

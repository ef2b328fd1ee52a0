"""``ppml-torch gpt2``: runs side by side on a tiny random GPT-2; bad input is one line, exit 2;
one process per party (``--cluster/--party``, ``ppml-torch launch``)."""

from __future__ import annotations

import io
import json
import os

import pytest

from ppml_torch.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--layers", "1", "--width", "16", "--heads", "2"]

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")


def test_torch_and_cpu_runs_agree(capsys):
    argv = ["gpt2", "--runs", "torch", "cpu", "--route", "flax", "--tokens", "3"]
    assert main([*argv, "--layers", "1", "--width", "16", "--heads", "2"]) == 0
    out = capsys.readouterr().out
    assert "seeded random GPT-2" in out
    assert "= 7 ids [40, 2883, 6155, 351, 616, 13779, 3290]" in out
    assert "all runs agree: yes" in out
    assert out.count(" ids [") == 3  # the prompt line + one per run


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--prompt", ""], "--prompt is empty"),
        (["--tokens", "0"], "--tokens: must be a positive integer, got 0"),
        # --layers: the random model (1024 positions), also when models/tiny-gpt2 is built
        (["--tokens", "2000", "--layers", "1"], "positions; the model's position table has 1024"),
        (["--checkpoint", "/nonexistent/dir"], "does not exist"),
        (["--checkpoint", "/tmp", "--layers", "2"], "--layers set the random model's shape"),
        (["--width", "30", "--heads", "4"], "--width 30 is not a multiple of --heads 4"),
        (["--runs", "spu:FOO"], "unknown protocol"),
    ],
)
def test_bad_input_one_line_exit_2(capsys, extra, message):
    assert main(["gpt2", "--runs", "cpu", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_checkpoint_whose_vocabulary_is_not_gpt2s(tmp_path, capsys):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=100)).save_pretrained(
        tmp_path
    )
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "gpt2"
    assert main(["gpt2", "--runs", "cpu", "--checkpoint", str(tmp_path)]) == 2
    assert "the model's vocabulary has 100" in capsys.readouterr().err


def test_approx_uses_the_checkpoints_candidates(tmp_path, capsys):
    import re

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_embd=8, n_head=2, n_positions=16, initializer_range=0.3)
    GPT2LMHeadModel(cfg).save_pretrained(tmp_path)
    cand = [11, 290, 13, 1000, 40000]
    (tmp_path / "candidates.json").write_text(json.dumps({"token_ids": sorted(cand)}))
    argv = ["gpt2", "--runs", "cpu", "--route", "flax", "--tokens", "3", "--approx"]
    assert main([*argv, "--checkpoint", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "argmax over the checkpoint's 5 candidate tokens (candidates.json)" in out
    m = re.search(r"cpu\S* flax\s+ids (\[[^\]]*\])", out)
    assert m, out
    ids = json.loads(m[1])
    assert len(ids) == 3 and set(ids) <= set(cand), out


# -- one process per party: argument checks (no process starts) --------------------------------

PARTY_REFUSALS = [
    (["--runs", "torch"], "run 'torch' needs alice's weights and bob's prompt in one process"),
    (["--runs", "spu:SEMI2K"], "run(s) spu:SEMI2K:FM64 keep every party in one process"),
    (["--runs", "secretflow:SEMI2K", "secretflow:ABY3"], "one run at a time, got 2"),
    (
        ["--runs", "secretflow:SEMI2K", "--tokens", "0"],
        "--tokens: must be a positive integer, got 0",
    ),
]


@pytest.mark.parametrize("extra, message", PARTY_REFUSALS)
def test_cluster_refusals_are_one_line(capsys, extra, message):
    # refused before the cluster file is read (it does not exist) or any model is built
    argv = ["gpt2", *extra, "--cluster", "/nonexistent.json", "--party", "bob"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err


@pytest.mark.parametrize("given", [["--cluster", "c.json"], ["--party", "bob"]])
def test_cluster_and_party_go_together(capsys, given):
    assert main(["gpt2", "--runs", "secretflow:SEMI2K", *given]) == 2
    assert "--cluster and --party go together" in capsys.readouterr().err


def test_roles_follow_the_cluster_files_parties(tmp_path, capsys, monkeypatch):
    """The weights are the cluster's first party's, the prompt its second's, whatever their
    names (dave, erin): erin's process reads the prompt and expects the ids, dave's weights.
    Stopped where the session would start (no process is started).  Catches roles written as
    the literals alice/bob again: erin would be told it holds shares only."""
    from ppml_torch.errors import PpmlError
    from ppml_torch.runners.runspec import RunSpec
    from ppml_torch.runners.secretflow.cluster import loopback_cluster

    class Stop(PpmlError):
        pass

    def stop(self, **kw):
        raise Stop(f"stopped before the session ({kw['party']})")

    monkeypatch.setattr(RunSpec, "open", stop)
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(loopback_cluster(["dave", "erin"])))
    argv = ["gpt2", "--runs", "secretflow:SEMI2K", "--cluster", str(path), *TINY, "--tokens", "2"]
    assert main([*argv, "--party", "erin"]) == 2
    out, err = capsys.readouterr()
    assert "stopped before the session (erin)" in err
    assert "it gives the prompt and receives the ids; the weights are dave's" in out, out
    assert "= 7 ids [40, 2883, 6155, 351, 616, 13779, 3290]; 2 new tokens" in out
    assert main([*argv, "--party", "dave"]) == 2
    out = capsys.readouterr().out
    assert "it gives the weights (secret-shared once per route); the ids go to erin" in out, out
    assert "prompt: erin's secret, --prompt is not read here" in out, out


def test_launch_accepts_gpt2_and_checks_its_arguments():
    from ppml_torch.cli.launch import check_command
    from ppml_torch.errors import PpmlError

    check_command(["gpt2", "--runs", "secretflow:ABY3", "--tokens", "3", *TINY], "alice")
    for extra, message in [
        (["--runs", "torch"], "run 'torch' needs alice's weights"),
        (["--runs", "secretflow:SEMI2K", "--prompt", ""], "--prompt is empty"),
        (
            ["--runs", "secretflow:SEMI2K", "--tokens", "0"],
            "--tokens: must be a positive integer, got 0",
        ),
    ]:
        with pytest.raises(PpmlError, match=message):
            check_command(["gpt2", *extra], "alice")


def test_launch_refuses_cpu_gpt2_in_one_line(capsys):
    assert main(["launch", "--parties", "alice,bob", "--", "gpt2", "--runs", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "run(s) cpu keep every party in one process" in err and "\n" not in err, err


# -- one process per party: a real run through the launcher ------------------------------------


@pytest.mark.slow
@pytest.mark.secretflow
def test_launch_semi2k_ids_reach_bob_only_and_match_in_process_spu(monkeypatch):
    """alice and bob, each in its own process (SecretFlow production mode, SEMI2K): bob's
    output has the ids of the same generation in one process (``spu:SEMI2K``), alice's has
    neither the ids nor the prompt."""
    from ppml_torch.apps.gpt2.job import DEFAULT_PROMPT
    from ppml_torch.cli.launch import check_command
    from ppml_torch.generation import generate, gpt2_tokenizer, random_gpt2, torch_greedy
    from ppml_torch.runners.secretflow.launcher import launch

    monkeypatch.setenv("PYTHONPATH", ROOT)  # the parties import this checkout's ppml_torch
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    argv = ["gpt2", "--runs", "secretflow:SEMI2K", "--tokens", "3", *TINY, "--init-std", "0.3"]
    result = launch(["alice", "bob"], argv, timeout_s=30, out=out, check=check_command)
    assert result.returncode == 0, out.getvalue()[-4000:]
    alice, bob = result.output("alice"), result.output("bob")

    prompt = gpt2_tokenizer().encode(DEFAULT_PROMPT)
    model = random_gpt2(1, 16, 2, seed=0, init_std=0.3)
    ref = generate(model, [prompt], 3, session="spu:SEMI2K").ids[0].tolist()
    want, _ = torch_greedy(model, [prompt], 3)
    print(f"bob: {bob}\nin-process spu:SEMI2K ids {ref}, torch {want[0].tolist()}")
    assert len(set(ref)) > 1  # varied ids: a meaningful comparison
    assert ref == want[0].tolist()  # the in-process reference is torch's greedy
    line = next(x for x in bob.splitlines() if x.startswith("secretflow:SEMI2K:FM64 graph"))
    assert f"ids {ref}" in line, line
    assert "bob received: the ids (3 per route), revealed to bob only" in bob
    assert f"= 7 ids {prompt}" in bob
    # alice: her row and figures, nothing revealed, neither the ids nor the prompt
    assert "alice received: nothing revealed; the ids were revealed to bob only" in alice
    assert "ids [" not in alice and str(ref) not in alice and str(prompt) not in alice, alice
    row = next(x for x in alice.splitlines() if x.startswith("secretflow:SEMI2K:FM64 "))
    assert row.split()[1] == "graph" and "sent in" in row and "(alice: " in row, row
    assert "communication (sent by alice)" in alice

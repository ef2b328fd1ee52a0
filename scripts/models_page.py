"""The compatibility table of real architectures: ``docs/models.md`` is written by this.

    python scripts/models_page.py               # every model, writes docs/models.md
    python scripts/models_page.py --only GPT-2 LSTM --no-write

Each entry builds a tiny, randomly initialised model (a few thousand parameters: no download,
CPU-sized) with its example inputs, and :func:`~ppml_torch.check_equivalence` checks it on
``cpu`` (outputs and gradients of ``sum(outputs)`` w.r.t. the parameters); entries marked
``sample`` are also run under ``spu:ABY3`` (outputs, with the bytes sent).  A model that does
not convert shows the first line of the refusal.  ``tests/scripts/test_models_page.py`` fails
when the page does not list exactly the models of :data:`MODELS`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's ppml_torch, also when run as a script
    sys.path.insert(0, str(ROOT))
PAGE = ROOT / "docs" / "models.md"
SEQ = 8
VOCAB = 128


@dataclasses.dataclass(frozen=True)
class Arch:
    name: str
    source: str  # "transformers" or "torch.nn" / "ppml_torch"
    build: Callable[[], tuple[Any, tuple, dict]]  # -> (module, args, kwargs)
    sample: bool = False  # also run under ABY3


def _ids(n: int = SEQ, vocab: int = VOCAB):
    import torch

    return torch.randint(0, vocab, (1, n), generator=torch.Generator().manual_seed(1))


def _x(*shape: int):
    import torch

    return torch.randn(*shape, generator=torch.Generator().manual_seed(2))


def _hf(config_cls: str, model_cls: str, inputs: str = "ids", **cfg: Any) -> Callable:
    def build():
        import torch
        import transformers

        torch.manual_seed(0)
        config = getattr(transformers, config_cls)(**cfg)
        if hasattr(config, "use_cache"):
            config.use_cache = False
        module = getattr(transformers, model_cls)(config).eval()
        if inputs == "ids":
            return module, (_ids(),), {}
        if inputs == "seq2seq":
            return module, (_ids(),), {"decoder_input_ids": _ids(4)}
        if inputs == "pixels":
            return module, (_x(1, 3, 32, 32),), {}
        if inputs == "audio":
            return module, (_x(1, 400),), {}
        if inputs == "features":
            return module, (_x(1, 8, 32),), {"decoder_input_ids": _ids(4)}
        raise ValueError(inputs)

    return build


def _nn(factory: Callable[[], Any], *shapes: tuple[int, ...], ids: bool = False) -> Callable:
    def build():
        import torch

        torch.manual_seed(0)
        module = factory().eval()
        args = tuple(_ids() if ids else _x(*s) for s in shapes)
        return module, args, {}

    return build


# tiny config parts shared by most decoders/encoders
_ENC = dict(
    vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
    intermediate_size=64, max_position_embeddings=64,
)  # fmt: skip
_DEC = dict(_ENC, num_key_value_heads=2)


def _models() -> list[Arch]:
    import torch.nn as nn

    from ppml_torch.models import nanogpt

    hf = [
        Arch("BERT", "transformers", _hf("BertConfig", "BertModel", **_ENC), sample=True),
        Arch("RoBERTa", "transformers", _hf("RobertaConfig", "RobertaModel", **_ENC)),
        Arch("XLM-RoBERTa", "transformers", _hf("XLMRobertaConfig", "XLMRobertaModel", **_ENC)),
        Arch(
            "DistilBERT",
            "transformers",
            _hf(
                "DistilBertConfig",
                "DistilBertModel",
                vocab_size=VOCAB,
                dim=32,
                n_layers=1,
                n_heads=2,
                hidden_dim=64,
            ),
        ),  # fmt: skip
        Arch(
            "ALBERT", "transformers", _hf("AlbertConfig", "AlbertModel", embedding_size=16, **_ENC)
        ),
        Arch(
            "ELECTRA",
            "transformers",
            _hf("ElectraConfig", "ElectraModel", embedding_size=16, **_ENC),
        ),
        Arch("DeBERTa-v2", "transformers", _hf("DebertaV2Config", "DebertaV2Model", **_ENC)),
        Arch(
            "MobileBERT",
            "transformers",
            _hf(
                "MobileBertConfig",
                "MobileBertModel",
                vocab_size=VOCAB,
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=64,
                embedding_size=16,
                intra_bottleneck_size=16,
                true_hidden_size=16,
                num_feedforward_networks=1,
            ),
        ),  # fmt: skip
        Arch(
            "GPT-2",
            "transformers",
            _hf(
                "GPT2Config",
                "GPT2LMHeadModel",
                vocab_size=VOCAB,
                n_embd=32,
                n_layer=1,
                n_head=2,
                n_positions=64,
            ),
            sample=True,
        ),  # fmt: skip
        Arch(
            "GPT-Neo",
            "transformers",
            _hf(
                "GPTNeoConfig",
                "GPTNeoForCausalLM",
                vocab_size=VOCAB,
                hidden_size=32,
                num_layers=2,
                num_heads=2,
                attention_types=[[["global", "local"], 1]],
                window_size=4,
                max_position_embeddings=64,
            ),
        ),  # fmt: skip
        Arch(
            "GPT-J",
            "transformers",
            _hf(
                "GPTJConfig",
                "GPTJForCausalLM",
                vocab_size=VOCAB,
                n_embd=32,
                n_layer=1,
                n_head=2,
                rotary_dim=8,
                n_positions=64,
            ),
        ),  # fmt: skip
        Arch("GPT-NeoX", "transformers", _hf("GPTNeoXConfig", "GPTNeoXForCausalLM", **_ENC)),
        Arch(
            "GPT-BigCode",
            "transformers",
            _hf(
                "GPTBigCodeConfig",
                "GPTBigCodeForCausalLM",
                vocab_size=VOCAB,
                n_embd=32,
                n_layer=1,
                n_head=2,
                n_positions=64,
            ),
        ),  # fmt: skip
        Arch(
            "CodeGen",
            "transformers",
            _hf(
                "CodeGenConfig",
                "CodeGenForCausalLM",
                vocab_size=VOCAB,
                n_embd=32,
                n_layer=1,
                n_head=4,
                rotary_dim=8,
                n_positions=64,
                n_ctx=64,
            ),
        ),  # fmt: skip
        Arch(
            "OPT",
            "transformers",
            _hf(
                "OPTConfig",
                "OPTForCausalLM",
                vocab_size=VOCAB,
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                ffn_dim=64,
                word_embed_proj_dim=32,
                max_position_embeddings=64,
            ),
        ),  # fmt: skip
        Arch(
            "BLOOM",
            "transformers",
            _hf(
                "BloomConfig",
                "BloomForCausalLM",
                vocab_size=VOCAB,
                hidden_size=32,
                n_layer=1,
                n_head=2,
            ),
        ),  # fmt: skip
        Arch(
            "Falcon",
            "transformers",
            _hf(
                "FalconConfig",
                "FalconForCausalLM",
                vocab_size=VOCAB,
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
            ),
        ),  # fmt: skip
        Arch("Llama", "transformers", _hf("LlamaConfig", "LlamaForCausalLM", **_DEC), sample=True),
        Arch("Mistral", "transformers", _hf("MistralConfig", "MistralForCausalLM", **_DEC)),
        Arch(
            "Mixtral (MoE)",
            "transformers",
            _hf(
                "MixtralConfig",
                "MixtralForCausalLM",
                num_local_experts=4,
                num_experts_per_tok=2,
                **_DEC,
            ),
        ),  # fmt: skip
        Arch("Qwen2", "transformers", _hf("Qwen2Config", "Qwen2ForCausalLM", **_DEC)),
        Arch("Qwen3", "transformers", _hf("Qwen3Config", "Qwen3ForCausalLM", head_dim=16, **_DEC)),
        Arch("Phi", "transformers", _hf("PhiConfig", "PhiForCausalLM", **_DEC)),
        Arch("Phi-3", "transformers", _hf("Phi3Config", "Phi3ForCausalLM", pad_token_id=0, **_DEC)),
        Arch("Gemma", "transformers", _hf("GemmaConfig", "GemmaForCausalLM", head_dim=16, **_DEC)),
        Arch(
            "Gemma 2", "transformers", _hf("Gemma2Config", "Gemma2ForCausalLM", head_dim=16, **_DEC)
        ),
        Arch("StableLM", "transformers", _hf("StableLmConfig", "StableLmForCausalLM", **_DEC)),
        Arch("OLMo 2", "transformers", _hf("Olmo2Config", "Olmo2ForCausalLM", **_DEC)),
        Arch("Granite", "transformers", _hf("GraniteConfig", "GraniteForCausalLM", **_DEC)),
        Arch(
            "Starcoder2", "transformers", _hf("Starcoder2Config", "Starcoder2ForCausalLM", **_DEC)
        ),
        Arch(
            "MPT",
            "transformers",
            _hf(
                "MptConfig",
                "MptForCausalLM",
                vocab_size=VOCAB,
                d_model=32,
                n_layers=1,
                n_heads=2,
                max_seq_len=64,
            ),
        ),  # fmt: skip
        Arch(
            "T5",
            "transformers",
            _hf(
                "T5Config",
                "T5Model",
                "seq2seq",
                vocab_size=VOCAB,
                d_model=32,
                d_kv=16,
                d_ff=64,
                num_layers=1,
                num_heads=2,
            ),
        ),  # fmt: skip
        Arch(
            "BART",
            "transformers",
            _hf(
                "BartConfig",
                "BartModel",
                "seq2seq",
                vocab_size=VOCAB,
                d_model=32,
                encoder_layers=1,
                decoder_layers=1,
                encoder_attention_heads=2,
                decoder_attention_heads=2,
                encoder_ffn_dim=64,
                decoder_ffn_dim=64,
                max_position_embeddings=64,
            ),
        ),  # fmt: skip
        Arch(
            "Marian",
            "transformers",
            _hf(
                "MarianConfig",
                "MarianModel",
                "seq2seq",
                vocab_size=VOCAB,
                d_model=32,
                encoder_layers=1,
                decoder_layers=1,
                encoder_attention_heads=2,
                decoder_attention_heads=2,
                encoder_ffn_dim=64,
                decoder_ffn_dim=64,
                max_position_embeddings=64,
                pad_token_id=0,
                decoder_start_token_id=0,
            ),
        ),  # fmt: skip
        Arch("CLIP text", "transformers", _hf("CLIPTextConfig", "CLIPTextModel", **_ENC)),
        Arch(
            "Wav2Vec2",
            "transformers",
            _hf(
                "Wav2Vec2Config",
                "Wav2Vec2Model",
                "audio",
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=64,
                conv_dim=(8, 8),
                conv_stride=(5, 2),
                conv_kernel=(10, 3),
                num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=2,
            ),
        ),  # fmt: skip
        Arch(
            "Whisper",
            "transformers",
            _hf(
                "WhisperConfig",
                "WhisperModel",
                "features",
                vocab_size=VOCAB,
                num_mel_bins=8,
                d_model=32,
                encoder_layers=1,
                decoder_layers=1,
                encoder_attention_heads=2,
                decoder_attention_heads=2,
                encoder_ffn_dim=64,
                decoder_ffn_dim=64,
                max_source_positions=16,
                max_target_positions=16,
                pad_token_id=0,
                bos_token_id=0,
                eos_token_id=0,
                decoder_start_token_id=0,
            ),
        ),  # fmt: skip
    ]
    tnn = [
        Arch(
            "MLP (Linear, GELU)",
            "torch.nn",
            _nn(lambda: nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4)), (4, 16)),
            sample=True,
        ),  # fmt: skip
        Arch("RNN", "torch.nn", _nn(lambda: nn.RNN(8, 16, batch_first=True), (2, 5, 8))),
        Arch(
            "LSTM",
            "torch.nn",
            _nn(lambda: nn.LSTM(8, 16, batch_first=True), (2, 5, 8)),
            sample=True,
        ),
        Arch(
            "LSTM (2 layers, bidirectional)",
            "torch.nn",
            _nn(
                lambda: nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True),
                (2, 5, 8),
            ),
        ),  # fmt: skip
        Arch("GRU", "torch.nn", _nn(lambda: nn.GRU(8, 16, batch_first=True), (2, 5, 8))),
        Arch(
            "TransformerEncoderLayer",
            "torch.nn",
            _nn(
                lambda: nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True),
                (2, 5, 16),
            ),
        ),  # fmt: skip
        Arch(
            "TransformerDecoderLayer",
            "torch.nn",
            _nn(
                lambda: nn.TransformerDecoderLayer(16, 2, 32, dropout=0.0, batch_first=True),
                (2, 5, 16),
                (2, 6, 16),
            ),
        ),  # fmt: skip
        Arch(
            "MultiheadAttention",
            "torch.nn",
            _nn(
                lambda: nn.MultiheadAttention(16, 2, batch_first=True),
                (2, 5, 16),
                (2, 5, 16),
                (2, 5, 16),
            ),
        ),  # fmt: skip
        Arch(
            "Embedding + Linear",
            "torch.nn",
            _nn(lambda: nn.Sequential(nn.Embedding(VOCAB, 16), nn.Linear(16, 4)), (1,), ids=True),
        ),  # fmt: skip
        Arch("LayerNorm", "torch.nn", _nn(lambda: nn.LayerNorm(16), (4, 16))),
        Arch("BatchNorm1d (eval)", "torch.nn", _nn(lambda: nn.BatchNorm1d(16), (4, 16))),
        Arch("GroupNorm", "torch.nn", _nn(lambda: nn.GroupNorm(2, 8), (2, 8, 5))),
        Arch("Bilinear", "torch.nn", _nn(lambda: nn.Bilinear(8, 6, 4), (3, 8), (3, 6))),
        Arch("Conv1d", "torch.nn", _nn(lambda: nn.Conv1d(4, 8, 3), (2, 4, 16))),
        Arch("Conv2d", "torch.nn", _nn(lambda: nn.Conv2d(3, 8, 3), (1, 3, 16, 16))),
        Arch("ConvTranspose2d", "torch.nn", _nn(lambda: nn.ConvTranspose2d(3, 4, 2), (1, 3, 8, 8))),
        Arch("MaxPool2d", "torch.nn", _nn(lambda: nn.MaxPool2d(2), (1, 3, 8, 8))),
        Arch("AvgPool2d", "torch.nn", _nn(lambda: nn.AvgPool2d(2), (1, 3, 8, 8))),
        Arch("AdaptiveAvgPool2d", "torch.nn", _nn(lambda: nn.AdaptiveAvgPool2d(1), (1, 3, 8, 8))),
        Arch(
            "nanoGPT (ppml_torch.models)",
            "ppml_torch",
            _nn(
                lambda: nanogpt.GPT(
                    nanogpt.GPTConfig(
                        block_size=16, vocab_size=VOCAB, n_layer=1, n_head=2, n_embd=32
                    )
                ),
                (1,),
                ids=True,
            ),
        ),  # fmt: skip
    ]
    from scripts.vision_models import VISION

    vision = [Arch(name, source, build, sample=sample) for name, source, build, sample in VISION]
    return hf + vision + tnn


MODELS: list[Arch] = []  # filled on first use (building the list imports torch)


def models() -> list[Arch]:
    if not MODELS:
        MODELS.extend(_models())
    return MODELS


@dataclasses.dataclass(frozen=True)
class Result:
    arch: Arch
    status: str  # "matches torch", "FAIL ...", or the refusal's first line
    converts: bool
    plain_err: float | None = None
    grad_err: float | None = None
    flax: str = "-"
    aby3_err: float | None = None
    aby3_tol: float | None = None
    aby3_ok: bool | None = None
    aby3_bytes: int | None = None
    seconds: float = 0.0


def check_one(arch: Arch, mpc: bool = True) -> Result:
    """Check one model: graph route on ``cpu`` (outputs and gradients), ABY3 for the sample."""
    from ppml_torch.converters.flax import WeightMapError, to_flax
    from ppml_torch.equivalence.check import EquivalenceError, check_equivalence

    t0 = time.perf_counter()
    try:
        module, args, kwargs = arch.build()
    except Exception as e:  # noqa: BLE001 - a config this transformers version refuses
        return Result(arch, f"could not build: {type(e).__name__}: {_first(e)}", False)
    try:  # the weight map itself (family_of alone is a first look at the layers)
        to_flax(module)
        flax = "yes"
    except WeightMapError:
        flax = "-"
    try:
        report = check_equivalence(
            module, args, example_kwargs=kwargs or None, runs=["cpu"], routes=["graph"], grads=True
        )
    except EquivalenceError as e:  # the example inputs do not fit this tiny config
        return Result(arch, f"could not run in torch: {e}", False, flax=flax)
    graph = report.rows[0]  # the graph route on cpu, or its one "does not convert" row
    if graph.status in ("error", "n/a"):
        return Result(arch, graph.detail, False, flax=flax, seconds=time.perf_counter() - t0)
    status = "matches torch" if graph.status == "pass" else f"FAIL: {graph.mismatch.describe()}"
    res = Result(
        arch, status, True, graph.out_err, graph.grad_err, flax, seconds=time.perf_counter() - t0
    )
    if mpc and arch.sample and graph.status == "pass":
        from ppml_torch.equivalence.sessions import session_for

        rep = check_equivalence(
            module, args, example_kwargs=kwargs or None, runs=["spu:ABY3"], routes=["graph"],
            sessions=session_for,
        )  # fmt: skip
        row = rep.row("graph", "spu:ABY3")
        res = dataclasses.replace(
            res, aby3_err=row.out_err, aby3_tol=row.tol.atol if row.tol else None,
            aby3_ok=row.status == "pass", aby3_bytes=row.send_bytes,
            seconds=time.perf_counter() - t0,
        )  # fmt: skip
    return res


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _e(x: float | None) -> str:
    return "" if x is None else f"{x:.1e}"


def markdown(results: list[Result]) -> str:
    n_ok = sum(r.status == "matches torch" for r in results)
    lines = [
        "# Model compatibility",
        "",
        "Generated by `python scripts/models_page.py` (do not edit by hand): tiny "
        "random configs of real architectures (transformers and torch.nn, no download), each "
        "checked with `ppml_torch.check_equivalence(module, inputs, runs=['cpu'], grads=True)` "
        "by the graph route; models marked with an ABY3 error were also run under "
        "`spu:ABY3` (FM64). `tests/scripts/test_models_page.py` fails when this page does not "
        "list exactly the models of `scripts/models_page.py`.",
        "",
        f"**{n_ok} of {len(results)} match torch** (outputs and gradients, plaintext).",
        "",
        "* *plaintext error*: largest |output - torch| on `cpu` (JAX float32);",
        "* *gradient error*: largest |d sum(outputs)/d param - torch| on `cpu`;",
        "* *ABY3*: largest output error under `spu:ABY3` / the default tolerance derived from "
        "the ops the model uses (`ppml_torch/equivalence/tolerances.py`), and the bytes sent;",
        "* *flax*: whether `ppml_torch.to_flax` (weight transfer) also knows the model.",
        "",
        "| model | from | status | plaintext error | gradient error | ABY3 error / tolerance | ABY3 sent | flax |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        aby3 = ""
        if r.aby3_err is not None:
            aby3 = f"{r.aby3_err:.1e} / {r.aby3_tol:.1e} {'pass' if r.aby3_ok else 'FAIL'}"
        sent = "" if r.aby3_bytes is None else f"{r.aby3_bytes / 2**20:.1f} MiB"
        status = r.status.replace("|", "/")
        if len(status) > 160:
            status = status[:157] + "..."
        lines.append(
            f"| {r.arch.name} | {r.arch.source} | {status} | {_e(r.plain_err)} | "
            f"{_e(r.grad_err)} | {aby3} | {sent} | {r.flax} |"
        )
    lines.append("")
    return "\n".join(lines)


def names_in_page(text: str) -> list[str]:
    """The model names listed in a docs/models.md page (first column of the table)."""
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| ---")]
    return [ln.split("|")[1].strip() for ln in rows[1:]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/models_page.py")
    p.add_argument("--only", nargs="+", metavar="NAME", help="only these models (no page)")
    p.add_argument("--no-mpc", action="store_true", help="skip the ABY3 runs of the sample")
    p.add_argument("--no-write", action="store_true", help=f"print only; do not write {PAGE}")
    args = p.parse_args(argv)
    archs = models()
    if args.only:
        unknown = sorted(set(args.only) - {a.name for a in archs})
        if unknown:
            p.error(f"unknown models {unknown}; names: {', '.join(a.name for a in archs)}")
        archs = [a for a in archs if a.name in args.only]
    results = []
    try:
        for arch in archs:
            r = check_one(arch, mpc=not args.no_mpc)
            results.append(r)
            aby3 = "" if r.aby3_err is None else f" ABY3 {r.aby3_err:.1e} (tol {r.aby3_tol:.1e})"
            print(f"{arch.name:<32} {r.seconds:5.1f}s  {r.status[:100]}{aby3}", flush=True)
    finally:
        from ppml_torch.equivalence.sessions import close_all

        close_all()
    page = markdown(results)
    if args.only or args.no_write:
        print(page)
    else:
        PAGE.write_text(page)
        print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

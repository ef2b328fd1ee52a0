"""A nanoGPT-style GPT-2 in torch, readable top to bottom.

LayerNorm, CausalSelfAttention, MLP, Block, GPTConfig, GPT -- in that order.  Attribute
names are GPT-2's checkpoint names (``transformer.wte``, ``transformer.h.0.attn.c_attn``,
``lm_head``...), so a HF GPT-2 checkpoint loads with an explicit key map where only the
four Conv1D weights per block are transposed (HF's ``Conv1D`` stores ``(in, out)``,
``nn.Linear`` stores ``(out, in)``).

Differences from Karpathy's nanoGPT, on purpose:
  * ``forward(idx)`` returns logits for every position ``(B, T, vocab)``; no loss.
  * Attention is plain softmax attention (no flash path), so ``torch.export`` and the
    graph converter see ordinary ops.
  * Masked scores are set to ``finfo.min`` (like HF GPT-2), not ``-inf``: a finite value
    survives fixed-point encoding under MPC.
  * The causal mask is a non-persistent buffer: it is not in ``state_dict``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (GPT-2 has one)."""

    def __init__(self, ndim: int, bias: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if config.n_embd % config.n_head:
            raise ValueError(
                f"GPTConfig: n_embd={config.n_embd} is not a multiple of n_head={config.n_head}"
            )
        # query, key, value projections for all heads, in one matmul
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        # causal mask: True where a position may attend (itself and the past)
        mask = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
        self.register_buffer(
            "mask", mask.view(1, 1, config.block_size, config.block_size), persistent=False
        )  # (1, 1, block_size, block_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()  # batch, sequence length, embedding width (n_embd)
        hs = C // self.n_head  # head size

        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)

        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
        causal = self.mask[:, :, :T, :T]  # (1, 1, T, T)
        att = att.masked_fill(~causal, torch.finfo(att.dtype).min)
        att = F.softmax(att, dim=-1)
        att = self.attn_dropout(att)
        y = att @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side

        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias, eps=config.layer_norm_eps)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


# The score MPC programs give masked attention slots: it keeps them out of the row max, and it
# is finite, so fixed point holds it (torch's finfo.min does not fit); the cached models and the
# Flax twin zero those slots after exp, so the value never reaches a sum.
MASKED_SCORE = -1e4


@dataclass
class GPTConfig:
    block_size: int = 1024  # longest sequence (GPT-2's n_positions)
    vocab_size: int = 50257
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm, like GPT-2
    layer_norm_eps: float = 1e-5


# HF GPT-2 stores these four weights per block as Conv1D, (in, out): transposed on load.
HF_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Causal-mask buffers that older HF checkpoints saved (``transformer.h.N.attn.bias``); no
# learned weights.  Not to be confused with ``attn.c_attn.bias``, a real parameter.
HF_MASK_BUFFERS = ("bias", "masked_bias")
# HF config fields that change the computation; GPT supports only these values.
HF_REQUIRED_CONFIG = {
    "activation_function": ("gelu_new", "gelu_pytorch_tanh"),
    "scale_attn_weights": (True,),
    "scale_attn_by_inverse_layer_idx": (False,),
    "reorder_and_upcast_attn": (False,),
    "add_cross_attention": (False,),
    "tie_word_embeddings": (True,),
}


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embeddings
                wpe=nn.Embedding(config.block_size, config.n_embd),  # position embeddings
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=LayerNorm(config.n_embd, bias=config.bias, eps=config.layer_norm_eps),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied, as in GPT-2
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids ``(B, T)`` -> logits ``(B, T, vocab_size)``."""
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"GPT: sequence length {T} > block_size {self.config.block_size}")
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)  # (T,)
        tok_emb = self.transformer.wte(idx)  # (B, T, C)
        pos_emb = self.transformer.wpe(pos)  # (T, C)
        x = self.transformer.drop(tok_emb + pos_emb)  # (B, T, C)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)  # (B, T, C)
        return self.lm_head(x)  # (B, T, vocab_size)

    # ---- loading HF GPT-2 checkpoints --------------------------------------------------

    @classmethod
    def config_from_hf(cls, hf_config: dict) -> GPTConfig:
        """A :class:`GPTConfig` from a HF ``GPT2Config`` (as a dict, e.g. ``config.json``)."""
        bad = {
            k: hf_config[k]
            for k, allowed in HF_REQUIRED_CONFIG.items()
            if k in hf_config and hf_config[k] not in allowed
        }
        if bad:
            raise ValueError(
                f"GPT.config_from_hf: unsupported GPT-2 config values {bad}; "
                f"nanoGPT supports only {HF_REQUIRED_CONFIG}"
            )
        return GPTConfig(
            block_size=int(hf_config["n_positions"]),
            vocab_size=int(hf_config["vocab_size"]),
            n_layer=int(hf_config["n_layer"]),
            n_head=int(hf_config["n_head"]),
            n_embd=int(hf_config["n_embd"]),
            dropout=0.0,
            bias=True,
            layer_norm_eps=float(hf_config.get("layer_norm_epsilon", 1e-5)),
        )

    @classmethod
    def from_hf_state_dict(cls, sd: dict[str, torch.Tensor], config: GPTConfig) -> GPT:
        """A GPT with the weights of a HF GPT-2 ``state_dict`` (``GPT2LMHeadModel`` or
        ``GPT2Model``: the ``transformer.`` prefix is optional).

        Key map: HF name -> same name here; the four Conv1D weights per block
        (``HF_TRANSPOSED``) are transposed; mask buffers (``HF_MASK_BUFFERS``) are dropped;
        ``lm_head.weight`` is tied to ``transformer.wte.weight`` and, if the checkpoint has
        it, must equal it.  Keys and shapes are checked before anything is copied.
        """
        from ppml_torch.weights import WeightMapError, check_shapes

        model = cls(config)
        target = model.state_dict()  # lm_head.weight and transformer.wte.weight: one tensor

        src: dict[str, torch.Tensor] = {}
        for k, v in sd.items():
            name = k if k.startswith(("transformer.", "lm_head.")) else "transformer." + k
            parts = name.split(".")  # transformer . h . N . attn . bias
            if len(parts) == 5 and parts[3] == "attn" and parts[4] in HF_MASK_BUFFERS:
                continue  # causal-mask buffer of an older checkpoint: rebuilt by the model
            src[name] = v.t() if name.endswith(HF_TRANSPOSED) else v
        head = src.pop("lm_head.weight", None)
        if head is not None and not torch.equal(head, src.get("transformer.wte.weight", head)):
            raise WeightMapError(
                "GPT.from_hf_state_dict: lm_head.weight differs from transformer.wte.weight, "
                "but GPT ties them; use a checkpoint with tie_word_embeddings=True"
            )
        expected = {k: tuple(v.shape) for k, v in target.items() if k != "lm_head.weight"}
        check_shapes(
            expected,
            {k: tuple(v.shape) for k, v in src.items()},
            what="GPT.from_hf_state_dict",
            fix="build GPT with the checkpoint's config (GPT.config_from_hf(config.json))",
            expected_name="nanoGPT",
            actual_name="HF checkpoint (Conv1D weights shown transposed)",
        )
        with torch.no_grad():
            for k, v in src.items():
                target[k].copy_(v)
        return model

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str]) -> GPT:
        """Load a HF GPT-2 checkpoint directory (``config.json`` + ``model.safetensors`` or
        ``pytorch_model.bin``, read with ``weights_only=True``).  No network access."""
        path = os.fspath(path)
        with open(os.path.join(path, "config.json")) as f:
            config = cls.config_from_hf(json.load(f))
        st = os.path.join(path, "model.safetensors")
        bin_ = os.path.join(path, "pytorch_model.bin")
        if os.path.exists(st):
            from safetensors.torch import load_file

            sd = load_file(st)
        elif os.path.exists(bin_):
            sd = torch.load(bin_, map_location="cpu", weights_only=True)
        else:
            raise FileNotFoundError(
                f"GPT.from_pretrained: no model.safetensors or pytorch_model.bin in {path!r}"
            )
        return cls.from_hf_state_dict(sd, config)

"""The HAD student: bidirectional Gated DeltaNet blocks, one attention block, two pretraining heads.

Parameter budget (defaults = `had-1.1m`): the encoder `HadModel` has 1.12M parameters
(3 BiGDN+MLP blocks ≈ 0.30M each, the attention+MLP block ≈ 0.21M); the pretraining heads add
≈0.13M (distillation head to 1024 dims) and ≈0.21M (one-layer reconstruction decoder).

    x = embed(input_ids)                                  # (B, L, d)
    for block in gdn_blocks: x = block(x)                 # x + BiGDN(norm(x)); x + MLP(norm(x))
    x = attention_block(x)                                # x + SelfAttn(norm(x)); x + MLP(norm(x))
    h = norm(x)                                           # last_hidden_state

The GDN mixer calls only `had.kernels.bidirectional_gated_delta_rule` (Triton on CUDA, chunked
PyTorch on CPU). Sequences are right-padded; `attention_mask` gives the real lengths.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput
from transformers.utils import ModelOutput

from had.data.alphabet import IGNORE_INDEX
from had.kernels import GDNInputs, bidirectional_gated_delta_rule
from had.student.configuration_had import HadConfig

logger = logging.getLogger(__name__)

N_NUC_CLASSES = 5  # A C G T N: what the reconstruction and MLM heads predict


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalise in fp32: bf16 mean-of-squares over 128 dims loses ~2 digits
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class SwiGLU(nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.up = nn.Linear(d, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.up(x).chunk(2, dim=-1)
        return self.down(F.silu(a) * b)


def rotary(x: torch.Tensor, pos: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate pairs (i, i + D/2) of x (B, nh, T, D) by angles pos·θ^(-2i/D); pos (T,) or (B, T)."""
    half = x.shape[-1] // 2
    freq = theta ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    ang = pos.float()[..., None] * freq  # (T, D/2) or (B, T, D/2)
    if ang.dim() == 3:
        ang = ang[:, None]  # broadcast over heads
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x.float()[..., :half], x.float()[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


class GDNDirection(nn.Module):
    """Projections of one GDN direction: q, k, v (+ short conv), decay g and write strength beta."""

    def __init__(self, cfg: HadConfig, reverse: bool):
        super().__init__()
        self.reverse = reverse
        self.h, self.dk = cfg.n_heads, cfg.head_dim
        width = 3 * self.h * self.dk
        self.qkv = nn.Linear(cfg.d_model, width, bias=False)
        self.conv = nn.Conv1d(width, width, cfg.conv_size, groups=width, bias=False) if cfg.conv_size else None
        self.a_proj = nn.Linear(cfg.d_model, self.h, bias=False)
        self.b_proj = nn.Linear(cfg.d_model, self.h, bias=False)
        self.A_log = nn.Parameter(torch.empty(self.h))
        self.dt_bias = nn.Parameter(torch.empty(self.h))
        self.o_norm = RMSNorm(self.dk, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> GDNInputs:
        """x (B, L, d), mask (B, L) 1 = real token -> GDNInputs of (B, L, H, K) and (B, L, H)."""
        B, L, _ = x.shape
        qkv = self.qkv(x)
        if self.conv is not None:
            # causal in this direction's reading order; pads are zeroed so the reverse
            # direction's window never reads them (its conv looks to the right)
            u = (qkv * mask[..., None].to(qkv.dtype)).transpose(1, 2)  # (B, 3HK, L)
            k = self.conv.kernel_size[0]
            u = F.pad(u, (0, k - 1) if self.reverse else (k - 1, 0))
            w = self.conv.weight.flip(-1) if self.reverse else self.conv.weight
            qkv = F.silu(F.conv1d(u, w, groups=u.shape[1]).transpose(1, 2))
        q, k, v = qkv.view(B, L, 3, self.h, self.dk).unbind(2)
        # gates in fp32: cumulative log decays lose precision in bf16 (kept in bf16 they cost 1.5e-2
        # output error at T=1024, against 2e-4..2e-3 for the kernel's other bf16 intermediates)
        g = -self.A_log.float().exp() * F.softplus(self.a_proj(x).float() + self.dt_bias.float())
        beta = torch.sigmoid(self.b_proj(x).float())
        return GDNInputs(q=q, k=k, v=v, g=g, beta=beta)


class BiGDN(nn.Module):
    """Forward and reverse GDN with their own projections, combined by a projection of the concatenation."""

    def __init__(self, cfg: HadConfig):
        super().__init__()
        self.impl = cfg.gdn_impl
        self.fwd = GDNDirection(cfg, reverse=False)
        self.bwd = GDNDirection(cfg, reverse=True)
        self.out_proj = nn.Linear(2 * cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)
        self.gate = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        o_f, o_b = bidirectional_gated_delta_rule(
            self.fwd(x, mask), self.bwd(x, mask), lengths=lengths, use_qk_l2norm=True, impl=self.impl
        )  # (B, L, H, V) each, o_b aligned with input positions
        o = torch.cat([self.fwd.o_norm(o_f), self.bwd.o_norm(o_b)], dim=-2).reshape(B, L, -1)
        return self.out_proj(o.to(x.dtype)) * F.silu(self.gate(x))


class SelfAttention(nn.Module):
    def __init__(self, cfg: HadConfig):
        super().__init__()
        self.nh, self.rotary, self.theta = cfg.attn_heads, cfg.position == "rotary", cfg.rope_theta
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.o_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.nh, d // self.nh).permute(2, 0, 3, 1, 4)  # (B, nh, L, hs)
        if self.rotary:
            pos = torch.arange(L, device=x.device)
            q, k = rotary(q, pos, self.theta), rotary(k, pos, self.theta)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        return self.o_proj(o.transpose(1, 2).reshape(B, L, d))


class Block(nn.Module):
    """Pre-norm residual block: x + mixer(norm(x)), then x + SwiGLU(norm(x))."""

    def __init__(self, cfg: HadConfig, mixer: nn.Module):
        super().__init__()
        self.norm1 = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.mixer = mixer
        self.norm2 = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.mlp_hidden)

    def forward(self, x: torch.Tensor, *mixer_args) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x), *mixer_args)
        return x + self.mlp(self.norm2(x))


class HadPreTrainedModel(PreTrainedModel):
    config_class = HadConfig
    base_model_prefix = "had"
    supports_gradient_checkpointing = False
    # a `had train` model/ dir holds the pretraining heads; encoder and classifier loads drop them
    _keys_to_ignore_on_load_unexpected = [r"^(distill_head|decoder|mlm_head)\."]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.normal_(0.0, std)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Conv1d):
            module.weight.normal_(0.0, 1.0 / math.sqrt(module.kernel_size[0]))
        elif isinstance(module, RMSNorm):
            module.weight.fill_(1.0)
        elif isinstance(module, GDNDirection):
            # Mamba2-style gates: decay rates A in [1, 16], step sizes dt in [1e-3, 1e-1]
            module.A_log.copy_(torch.empty_like(module.A_log).uniform_(1, 16).log())
            dt = torch.exp(torch.empty_like(module.dt_bias).uniform_(math.log(1e-3), math.log(1e-1)))
            module.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def param_counts(self) -> dict[str, int]:
        """Parameters per top-level component, e.g. {'had.gdn_blocks': 905k, ...}."""
        counts: dict[str, int] = {}
        for name, p in self.named_parameters():
            parts = name.split(".")
            key = ".".join(parts[:2]) if parts[0] == self.base_model_prefix else parts[0]
            counts[key] = counts.get(key, 0) + p.numel()
        return counts

    def log_param_counts(self) -> None:
        counts = self.param_counts()
        split = ", ".join(f"{k} {v:,}" for k, v in counts.items())
        logger.info("%s: %s parameters (%s)", type(self).__name__, f"{sum(counts.values()):,}", split)


class HadModel(HadPreTrainedModel):
    """Encoder: forward(input_ids (B, L), attention_mask (B, L)) -> last_hidden_state (B, L, d)."""

    def __init__(self, config: HadConfig):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.gdn_blocks = nn.ModuleList(Block(config, BiGDN(config)) for _ in range(config.n_gdn_layers))
        self.pos_embed = (
            nn.Embedding(config.max_position, config.d_model)
            if config.use_attention and config.position == "learned" else None
        )
        self.attention_block = Block(config, SelfAttention(config)) if config.use_attention else None
        self.norm = RMSNorm(config.d_model, config.rms_norm_eps)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_) -> BaseModelOutput:
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        mask = attention_mask.bool()
        lengths = attention_mask.sum(1).to(torch.int32)
        x = self.embed(input_ids)
        for block in self.gdn_blocks:
            x = block(x, mask, lengths)
        if self.attention_block is not None:
            if self.pos_embed is not None:
                x = x + self.pos_embed(torch.arange(x.shape[1], device=x.device))
            x = self.attention_block(x, mask)
        return BaseModelOutput(last_hidden_state=self.norm(x))


class CrossAttentionDecoderLayer(nn.Module):
    """Queries (masked positions) attend to keys/values (visible positions); rotary on both sides."""

    def __init__(self, cfg: HadConfig):
        super().__init__()
        self.nh, self.theta = cfg.decoder_heads, cfg.rope_theta
        self.norm_q = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.norm_kv = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.q_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.kv_proj = nn.Linear(cfg.d_model, 2 * cfg.d_model, bias=False)
        self.o_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.norm_mlp = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.mlp_hidden)

    def forward(self, xq, q_pos, h, key_mask):
        """xq (B, M, d) at positions q_pos (B, M); h (B, L, d); key_mask (B, L) True = visible."""
        B, M, d = xq.shape
        L, hs = h.shape[1], d // self.nh
        q = self.q_proj(self.norm_q(xq)).view(B, M, self.nh, hs).transpose(1, 2)
        k, v = self.kv_proj(self.norm_kv(h)).view(B, L, 2, self.nh, hs).permute(2, 0, 3, 1, 4)
        q, k = rotary(q, q_pos, self.theta), rotary(k, torch.arange(L, device=h.device), self.theta)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        xq = xq + self.o_proj(o.transpose(1, 2).reshape(B, M, d))
        return xq + self.mlp(self.norm_mlp(xq))


class ReconstructionDecoder(nn.Module):
    def __init__(self, cfg: HadConfig):
        super().__init__()
        self.layers = nn.ModuleList(CrossAttentionDecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.out = nn.Linear(cfg.d_model, N_NUC_CLASSES)

    def forward(self, h, masked_positions, visible):
        """h (B, L, d), masked_positions (B, M), visible (B, L) -> logits (B, M, 5)."""
        xq = gather_positions(h, masked_positions)
        for layer in self.layers:
            xq = layer(xq, masked_positions, h, visible)
        return self.out(self.norm(xq))


def gather_positions(h: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """h (B, L, d), positions (B, M) -> (B, M, d)."""
    return h.gather(1, positions[..., None].expand(-1, -1, h.shape[-1]))


def span_mean(h: torch.Tensor, nt_token: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Mean of h (B, L, d) over the nucleotides of each token; nt_token (B, L) in [-1, n_tokens).

    -1 marks nucleotides of no visible token. Returns (B, n_tokens, d); tokens with no nucleotide get 0.
    """
    B, L, d = h.shape
    idx = torch.where(nt_token >= 0, nt_token, n_tokens)  # a trash slot for uncovered positions
    sums = h.new_zeros(B, n_tokens + 1, d).scatter_add_(1, idx[..., None].expand(-1, -1, d), h)
    counts = h.new_zeros(B, n_tokens + 1).scatter_add_(1, idx, torch.ones_like(h[..., 0]))
    return (sums / counts.clamp(min=1)[..., None])[:, :n_tokens]


def nucleotide_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (B, M, C) against labels (B, M) over labels != -100.

    0 rather than NaN when a batch has no masked nucleotide (a cache built with a mask ratio
    near 0, or windows too short for a 6-mer): the mean over nothing must not poison the run.
    """
    total = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), reduction="sum")
    return total / (labels != IGNORE_INDEX).sum().clamp(min=1)


@dataclass
class HadPretrainingOutput(ModelOutput):
    """loss = λ_d·loss_distill + λ_r·loss_recon (or loss_mlm for the MLM-only baseline)."""

    loss: torch.Tensor | None = None
    loss_distill: torch.Tensor | None = None
    loss_recon: torch.Tensor | None = None
    loss_mlm: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None


class HadForPretraining(HadPreTrainedModel):
    """Encoder + distillation head (MSE to teacher features) + reconstruction decoder (CE).

    forward takes the batch of `had.student.collate.collate_cache_items`:
        input_ids, attention_mask (B, L); nt_token (B, L) index of the visible teacher token
        covering each nucleotide (-1: none); targets (B, N, D) teacher features, target_mask (B, N);
        nt_mask (B, L) masked nucleotides; masked_positions, masked_labels (B, M) (-100 = padding).
    """

    def __init__(self, config: HadConfig):
        super().__init__(config)
        self.had = HadModel(config)
        d = config.d_model
        self.distill_head = nn.Linear(d, config.teacher_dim) if config.has_distill else None
        self.decoder = ReconstructionDecoder(config) if config.has_recon else None
        self.mlm_head = nn.Linear(d, N_NUC_CLASSES) if config.has_mlm else None
        self.post_init()
        self.log_param_counts()

    def forward(
        self, input_ids, attention_mask, nt_mask, masked_positions, masked_labels,
        nt_token=None, targets=None, target_mask=None, **_,
    ) -> HadPretrainingOutput:
        cfg = self.config
        h = self.had(input_ids, attention_mask).last_hidden_state
        out = HadPretrainingOutput(last_hidden_state=h, loss=h.new_zeros((), dtype=torch.float32))
        if self.distill_head is not None:
            out.loss_distill = self._distill_loss(h, nt_token, targets, target_mask)
            out.loss = out.loss + cfg.lambda_distill * out.loss_distill
        if self.decoder is not None:
            visible = attention_mask.bool() & ~nt_mask
            logits = self.decoder(h, masked_positions, visible)
            out.loss_recon = nucleotide_ce(logits, masked_labels)
            out.loss = out.loss + cfg.lambda_recon * out.loss_recon
        if self.mlm_head is not None:
            logits = self.mlm_head(gather_positions(h, masked_positions))
            out.loss_mlm = nucleotide_ce(logits, masked_labels)
            out.loss = out.loss + out.loss_mlm
        return out

    def _distill_loss(self, h, nt_token, targets, target_mask) -> torch.Tensor:
        targets = targets.float()
        if self.config.target_layernorm:
            targets = F.layer_norm(targets, targets.shape[-1:])
        if self.config.distill_mode == "span_mean":
            pred = self.distill_head(span_mean(h, nt_token, targets.shape[1]))  # (B, N, D)
            valid = target_mask
        else:  # broadcast: every covered nucleotide regresses its token's vector
            pred = self.distill_head(h)  # (B, L, D)
            targets = gather_positions(targets, nt_token.clamp(min=0))
            valid = nt_token >= 0
        err = (pred.float() - targets).pow(2).mean(-1)
        return err[valid].sum() / valid.sum().clamp(min=1)  # 0, not NaN, when no token is visible


class HadForSequenceClassification(HadPreTrainedModel):
    """Encoder + mean pooling over real tokens + linear; CE loss (MSE when num_labels == 1)."""

    def __init__(self, config: HadConfig):
        super().__init__(config)
        self.had = HadModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.d_model, config.num_labels)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, labels=None, **_) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        h = self.had(input_ids, attention_mask).last_hidden_state
        m = attention_mask[..., None].to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            if self.config.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1).float(), labels.float())
            else:
                loss = F.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

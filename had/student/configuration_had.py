"""`HadConfig`: every hyper-parameter of the HAD student, with the defaults of the `had-1.1m` preset.

The defaults are this project's choices where the paper is silent (see DESIGN.md §1):
d_model 128, 3 BiGDN+MLP blocks then 1 attention+MLP block, 4 heads of 32, SwiGLU MLPs,
RMSNorm pre-norm. With them the encoder (`HadModel`) has ≈1.12M parameters; the pretraining
heads (distillation head, reconstruction decoder) come on top and are dropped for fine-tuning.
"""
from __future__ import annotations

import difflib
import inspect

from transformers import PretrainedConfig

from had.errors import HadError
from had.kernels.gated_delta.ops import IMPLS as GDN_IMPLS

DISTILL_MODES = ("span_mean", "broadcast")
POSITION_MODES = ("rotary", "learned")
# What the student learns from: had = distillation + reconstruction (the paper), distill or recon
# alone (ablations), mlm = the baseline without the teacher (a linear head on the masked nucleotides).
OBJECTIVES = ("had", "distill", "recon", "mlm")
# The three switches that named the objective before `objective`: saved configs and `student:` sections
# that hold them still load (`_legacy_objective`).
LEGACY_SWITCHES = ("use_distill", "use_recon", "mlm_only")


class HadConfig(PretrainedConfig):
    """Configuration of the HAD student.

    Encoder
        vocab_size (7): nucleotide ids A0 C1 G2 T3 N4 MASK5 PAD6 (`had.data.alphabet`).
        pad_token_id (6), mask_token_id (5).
        d_model (128): residual width.
        n_gdn_layers (3): bidirectional GDN + MLP blocks.
        n_heads (4), head_dim (32): GDN heads per direction and their q/k/v width.
        conv_size (4): causal depthwise short convolution on q, k, v (in each direction's
            own reading order); 0 disables it.
        mlp_hidden (384): SwiGLU hidden width (3 · d_model).
        use_attention (True): add the single self-attention + MLP block after the GDN blocks.
        attn_heads (4): heads of that attention layer.
        position (rotary): rotary | learned; how the attention layer sees positions
            (the GDN blocks are order-aware by themselves).
        max_position (1024): size of the learned position table (`position: learned`).
        rope_theta (10000.0): rotary base.
        rms_norm_eps (1e-6).
        gdn_impl (auto): kernel path for `had.kernels` (auto | triton | triton_v2 | torch | naive).
        initializer_range (0.02): std of the normal init of linear and embedding weights.
    Pretraining heads
        teacher_dim (1024): width of the cached teacher features (NTv2-500M: 1024).
        objective (had): what the student learns from (older configs: `LEGACY_SWITCHES`):
            had = both losses below; distill = the distillation head + MSE to the teacher features
            of visible tokens alone; recon = the cross-attention decoder + 5-way CE over the masked
            nucleotides alone; mlm = baseline without the teacher: a linear head predicts the
            masked nucleotides straight from the encoder (neither head nor decoder).
        distill_mode (span_mean): span_mean = mean of the student states over the nucleotides
            of each visible teacher token, then a linear head to teacher_dim; broadcast = the
            head is applied per nucleotide and the token's teacher vector is its target.
        target_layernorm (False): LayerNorm (no affine) the teacher targets before the MSE.
        decoder_heads (4), decoder_layers (1): size of the reconstruction decoder.
        lambda_distill (1.0), lambda_recon (1.0): loss weights.
    Fine-tuning
        num_labels (2), classifier_dropout (0.0): `HadForSequenceClassification`.
    """

    model_type = "had"

    def __init__(
        self,
        vocab_size: int = 7,
        pad_token_id: int = 6,
        mask_token_id: int = 5,
        d_model: int = 128,
        n_gdn_layers: int = 3,
        n_heads: int = 4,
        head_dim: int = 32,
        conv_size: int = 4,
        mlp_hidden: int = 384,
        use_attention: bool = True,
        attn_heads: int = 4,
        position: str = "rotary",
        max_position: int = 1024,
        rope_theta: float = 10000.0,
        rms_norm_eps: float = 1e-6,
        gdn_impl: str = "auto",
        initializer_range: float = 0.02,
        teacher_dim: int = 1024,
        objective: str = "had",
        distill_mode: str = "span_mean",
        target_layernorm: bool = False,
        decoder_heads: int = 4,
        decoder_layers: int = 1,
        lambda_distill: float = 1.0,
        lambda_recon: float = 1.0,
        classifier_dropout: float = 0.0,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.mask_token_id = mask_token_id
        self.d_model = d_model
        self.n_gdn_layers = n_gdn_layers
        self.n_heads = n_heads
        self.head_dim = head_dim
        self.conv_size = conv_size
        self.mlp_hidden = mlp_hidden
        self.use_attention = use_attention
        self.attn_heads = attn_heads
        self.position = position
        self.max_position = max_position
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.gdn_impl = gdn_impl
        self.initializer_range = initializer_range
        self.teacher_dim = teacher_dim
        self.objective = _legacy_objective(kwargs) or objective
        self.distill_mode = distill_mode
        self.target_layernorm = target_layernorm
        self.decoder_heads = decoder_heads
        self.decoder_layers = decoder_layers
        self.lambda_distill = lambda_distill
        self.lambda_recon = lambda_recon
        self.classifier_dropout = classifier_dropout
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self._validate()

    # The HF base config accepts any key silently; `from_kwargs` is the strict entry point
    # used by `had train` so that a typo in the `student:` section is an error.
    @classmethod
    def field_names(cls) -> list[str]:
        """The HadConfig-specific keyword arguments (what a `student:` section may hold)."""
        params = inspect.signature(cls.__init__).parameters
        return [p for p in params if p not in ("self", "kwargs")] + ["num_labels"]

    @classmethod
    def from_kwargs(cls, kwargs: dict, where: str = "student") -> "HadConfig":
        names = cls.field_names()
        unknown = sorted(set(kwargs) - set(names) - set(LEGACY_SWITCHES))
        if unknown:
            hints = [f"'{k}' (did you mean '{c[0]}'?)" if (c := difflib.get_close_matches(k, names, n=1)) else f"'{k}'"
                     for k in unknown]
            raise HadError(f"{where}: unknown key(s) {', '.join(hints)}; valid keys: {', '.join(names)}")
        return cls(**kwargs)

    def own_dict(self) -> dict:
        """The HadConfig fields only (round-trips through `from_kwargs`)."""
        return {name: getattr(self, name) for name in self.field_names()}

    @property
    def has_distill(self) -> bool:
        return self.objective in ("had", "distill")

    @property
    def has_recon(self) -> bool:
        return self.objective in ("had", "recon")

    @property
    def has_mlm(self) -> bool:
        return self.objective == "mlm"

    def _validate(self) -> None:
        def check(ok: bool, msg: str) -> None:
            if not ok:
                raise HadError(f"student config: {msg}")

        check(self.distill_mode in DISTILL_MODES, f"distill_mode must be one of {DISTILL_MODES}, got {self.distill_mode!r}")
        check(self.position in POSITION_MODES, f"position must be one of {POSITION_MODES}, got {self.position!r}")
        check(self.gdn_impl in GDN_IMPLS, f"gdn_impl must be one of {GDN_IMPLS}, got {self.gdn_impl!r}")
        check(self.d_model % self.attn_heads == 0, f"d_model {self.d_model} not divisible by attn_heads {self.attn_heads}")
        check(self.d_model % self.decoder_heads == 0, f"d_model {self.d_model} not divisible by decoder_heads {self.decoder_heads}")
        check(self.objective in OBJECTIVES, f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        check(self.conv_size >= 0 and self.n_gdn_layers >= 0, "conv_size and n_gdn_layers must be >= 0")


def _legacy_objective(kwargs: dict) -> str | None:
    """The objective that `LEGACY_SWITCHES` (popped from kwargs) name, or None when none is given.

    Their old rule: mlm_only wins; else distillation and/or reconstruction, at least one.
    """
    given = {key: kwargs.pop(key) for key in LEGACY_SWITCHES if key in kwargs}
    if not given:
        return None
    distill, recon = given.get("use_distill", True), given.get("use_recon", True)
    if given.get("mlm_only", False):
        return "mlm"
    if not (distill or recon):
        raise HadError("student config: use_distill and use_recon are both off: nothing to train "
                       "(set mlm_only for the baseline)")
    return "had" if distill and recon else "distill" if distill else "recon"

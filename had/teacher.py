"""Load a frozen DNA teacher (hub id or local directory) and build the tiny demo teacher.

Any masked LM whose tokenizer is one of had's families (``had.data.tokenizer_load``: NTv2
k-mers, BPE such as DNABERT-2, single nucleotide) loads here; the tokenizer is read from the
teacher's own files first, so an unsupported one is refused before any weight is read.
Real NTv2 checkpoints ship their own modeling code (a SwiGLU FFN) behind ``auto_map``
with no ``AutoModel`` entry, so the backbone is ``AutoModelForMaskedLM(...).base_model``
and loading needs ``trust_remote_code=True``. Built-in ESM / BERT directories (the tiny
teacher, benchmark shapes) go through the very same path.

    path = build_tiny_teacher("/tmp/tiny")            # EsmConfig + NTv2 tokenizer files
    teacher = load_teacher(str(path), device="cpu")
    enc = teacher.tokenizer.batch_encode(["ACGTACGTNNA"])
    feats = teacher.features(torch.from_numpy(enc["input_ids"]),
                             torch.from_numpy(enc["attention_mask"]))   # [1, T, D]
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from had.data.fingerprint import fingerprint
from had.data.tokenizer import DEFAULT_DIR as TOKENIZER_DIR
from had.data.tokenizer import NTv2Tokenizer
from had.data.tokenizer_base import TeacherTokenizer
from had.data.tokenizer_load import TOKENIZER_FILES as ANY_TOKENIZER_FILES
from had.data.tokenizer_load import load_tokenizer
from had.errors import HadError
from had.runtime import resolve_device

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TOKENIZER_FILES = ("vocab.txt", "special_tokens_map.json", "tokenizer_config.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


@dataclass
class Teacher:
    """A frozen encoder in eval mode plus the tokenizer its ids come from."""

    encoder: nn.Module
    tokenizer: TeacherTokenizer
    name: str
    hidden_size: int
    num_hidden_layers: int
    max_tokens: int | None  # longest input (specials included) its positions allow; None = no limit
    config_hash: str  # sha256 of the model config (JSON, sorted keys)
    fingerprint: str  # sha256 over the weight files, or over the state_dict bytes
    cpu_threads: int | None = None  # intra-op threads of a forward on CPU; None = torch's current setting

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.encoder.parameters()).dtype

    def numerics(self) -> dict:
        """What decides the features' bits beyond the teacher and its inputs (cache FORMAT.md, "Determinism"):
        torch version, device kind (CPU instruction set or GPU model), compute dtype, CPU threads."""
        device = self.device
        on_cpu = device.type == "cpu"
        kind = f"cpu ({torch.backends.cpu.get_cpu_capability()})" if on_cpu else torch.cuda.get_device_name(device)
        dtype = {v: k for k, v in DTYPES.items()}[self.dtype]
        return {"torch": torch.__version__, "device": kind, "dtype": dtype,
                "cpu_threads": (self.cpu_threads or torch.get_num_threads()) if on_cpu else None}

    def check_layer(self, layer: int) -> None:
        """-1 = last hidden state after the final norm; 0 = embeddings; k = output of block k."""
        if not (layer == -1 or 0 <= layer <= self.num_hidden_layers):
            raise HadError(
                f"teacher.layer={layer}: {self.name} has layers 0..{self.num_hidden_layers} "
                "(0 = embeddings) or -1 (last, after the final norm)"
            )

    @torch.inference_mode()
    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """Hidden states of one layer: input_ids, attention_mask [B, T] -> [B, T, D] (model dtype).

        Layers other than -1 are taken with a forward hook on the block itself, because what
        ``output_hidden_states`` returns for the last entry differs between model codes
        (built-in ESM in transformers 5 gives the normed state, NTv2's own code the raw one).
        Right padding with ``attention_mask == 0`` does not change the real tokens' outputs
        beyond float rounding (ESM position ids count real tokens only).
        """
        self.check_layer(layer)
        device = self.device
        kwargs = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
        with self._threads():
            if layer == -1:
                return self.encoder(**kwargs, return_dict=True).last_hidden_state
            module = self.encoder.embeddings if layer == 0 else self.encoder.encoder.layer[layer - 1]
            captured = []
            handle = module.register_forward_hook(
                lambda _m, _i, out: captured.append(out[0] if isinstance(out, tuple) else out))
            try:
                self.encoder(**kwargs, return_dict=True)
            finally:
                handle.remove()
            return captured[0]

    @contextlib.contextmanager
    def _threads(self):
        """On CPU, run on exactly `cpu_threads` intra-op threads, then restore the process's setting."""
        if self.cpu_threads is None or self.device.type != "cpu":
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(self.cpu_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def load_teacher(model: str, trust_remote_code: bool = False, dtype: str = "auto", device: str = "auto",
                 tokenizer: str = "auto", cpu_threads: int | None = None) -> Teacher:
    """Load a teacher backbone from a HF hub id or a local directory (frozen, eval mode).

    dtype: auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16; device: auto | cpu | cuda[:i];
    tokenizer: the family of its tokenizer files, auto (detected) | kmer | bpe | char;
    cpu_threads: intra-op threads of `features` on CPU (None: whatever the process uses).
    """
    from transformers import AutoConfig, AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    device = resolve_device(device, "teacher.device")
    if dtype == "auto":
        dtype = "bf16" if device.type == "cuda" else "fp32"
    local = Path(model)
    config_dict = local_model_config(model, trust_remote_code)
    if config_dict is not None and config_dict.get("model_type") == "had":
        raise HadError(f"{model} is a had student, not a teacher (use it with had eval --model)")
    tok = teacher_tokenizer(local, config_dict, tokenizer) if config_dict is not None else None
    try:
        config = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
        if tok is None:  # a hub model: its tokenizer files come with its snapshot
            tok = teacher_tokenizer(_hub_snapshot(model, ANY_TOKENIZER_FILES), config.to_dict(), tokenizer)
        if tok.vocab_size > config.vocab_size:
            raise HadError(f"model {model}: its tokenizer ({tok.family}, {tok.source}) has {tok.vocab_size} tokens "
                           f"but its embedding only {config.vocab_size}: not the tokenizer it was trained with")
        mlm = AutoModelForMaskedLM.from_pretrained(
            model, config=config, trust_remote_code=trust_remote_code, dtype=DTYPES[dtype]
        )
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise _remote_code_error(model) from None
        raise HadError(f"model {model}: cannot load: {e}") from None
    except OSError as e:
        reason = str(e).split("\n")[0]
        raise HadError(f"model {model}: neither an existing local folder nor a hub id that could be loaded "
                       f"({reason})") from None
    encoder = mlm.base_model.to(device).eval().requires_grad_(False)
    del mlm
    # The architecture, not where it was loaded from: a moved teacher folder is the same teacher.
    settings = {k: v for k, v in config.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
    config_json = json.dumps(settings, sort_keys=True, default=str)
    return Teacher(
        encoder=encoder,
        tokenizer=tok,
        name=model,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        max_tokens=_max_tokens(config, encoder),
        config_hash=hashlib.sha256(config_json.encode()).hexdigest(),
        fingerprint=_fingerprint(local if local.is_dir() else _hub_snapshot(model), encoder),
        cpu_threads=cpu_threads,
    )


def teacher_tokenizer(folder: Path, config: dict, family: str = "auto") -> TeacherTokenizer:
    """The tokenizer in a teacher's folder; an ESM folder without tokenizer files gets NTv2's
    (what had did before it read other families: such folders were always NTv2-tokenized)."""
    has_files = any((folder / name).is_file() for name in ANY_TOKENIZER_FILES)
    if not has_files and config.get("model_type") == "esm" and family in ("auto", "kmer"):
        return NTv2Tokenizer.from_dir(TOKENIZER_DIR)
    return load_tokenizer(folder, family)


def _max_tokens(config, encoder: nn.Module) -> int | None:
    """Longest input the model's positions allow (None: no learned position table, e.g. ALiBi)."""
    if config.model_type == "esm":
        # ESM position ids start after the padding id, so max_position_embeddings - pad_id - 1 real tokens fit.
        return config.max_position_embeddings - config.pad_token_id - 1
    table = getattr(getattr(encoder, "embeddings", None), "position_embeddings", None)
    return table.num_embeddings if isinstance(table, nn.Embedding) else None


def local_model_config(model: str, trust_remote_code: bool = False) -> dict | None:
    """config.json of a local model directory, None for a hub id; HadError for a path that cannot be a model
    (a file, a missing path, a folder without config.json or weights, own modeling code without
    trust_remote_code) rather than transformers' hub messages.

    A hub id is "name" or "org/name": a missing path with more than one "/" (or starting with ".", "/", "~")
    is a local one.
    """
    local = Path(model)
    if local.is_file():
        raise HadError(f"{model} is a file, expected a model directory or hub id")
    if not local.is_dir():
        if model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model:
            raise HadError(f"no such directory: {model}")
        return None
    if not (local / "config.json").is_file():
        raise HadError(f"model {model}: directory has no config.json")
    config = json.loads((local / "config.json").read_text())
    if "auto_map" in config and not trust_remote_code:
        raise _remote_code_error(model)
    if not any(p.suffix in WEIGHT_SUFFIXES for p in local.iterdir()):
        raise HadError(f"{model} has config.json but no weights (model.safetensors or pytorch_model.bin)")
    return config


def absolute_local(path: str) -> str:
    """`path` as a process in another directory (a remote Dask worker) must see it: absolute when it
    names an existing local file or folder; hub ids and fsspec URLs (s3://, memory://) unchanged."""
    return os.path.abspath(path) if "://" not in path and os.path.exists(path) else path


def build_tiny_teacher(
    out_dir: str | Path, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4, seed: int = 0
) -> Path:
    """Save a randomly initialised ESM masked LM with NTv2's tokenizer files; returns out_dir.

    Same architecture family as NTv2 (rotary, pre-LN, final LayerNorm, no embedding norm,
    no token dropout), 4107-token vocabulary; special ids come from the tokenizer files.
    """
    from transformers import EsmConfig, EsmForMaskedLM

    out_dir = Path(out_dir)
    tok = NTv2Tokenizer.default()
    config = EsmConfig(
        vocab_size=tok.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=4 * hidden_size,
        position_embedding_type="rotary",
        max_position_embeddings=2050,
        pad_token_id=tok.pad_id,
        mask_token_id=tok.mask_id,
        emb_layer_norm_before=False,
        token_dropout=False,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_norm_eps=1e-12,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = EsmForMaskedLM(config).eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(TOKENIZER_DIR / name, out_dir / name)
    return out_dir


def _remote_code_error(model: str) -> HadError:
    return HadError(
        f"model {model} ships its own modeling code (config.json has auto_map; real NTv2 "
        "checkpoints do): pass --trust-remote-code (teacher.trust_remote_code=true) to load it"
    )


def _hub_snapshot(model: str, files: tuple[str, ...] | None = None) -> Path:
    """The local snapshot folder of a hub model (fetching `files` if given), or a non-dir."""
    try:
        from huggingface_hub import snapshot_download

        if files:
            return Path(snapshot_download(model, allow_patterns=list(files)))
        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # no cache entry: fall back to hashing the state_dict
        return Path("/nonexistent")


def _fingerprint(local: Path, encoder: nn.Module) -> str:
    """sha256 over the weight files of a local dir (names and bytes, `fingerprint`), else over the state_dict bytes."""
    files = [p for p in local.glob("*") if p.suffix in WEIGHT_SUFFIXES] if local.is_dir() else []
    if files:
        return fingerprint(files)
    h = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()

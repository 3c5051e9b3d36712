"""Pretrained encoders to fine-tune, and the classifier put on top of them.

Two kinds of backbone, one interface (`Backbone`):
- a `had` student directory (`had train`'s `<out>/model/`, detected by config.json
  `model_type: "had"`): `AutoModel` after `import had.student`; one token per nucleotide.
- any HF masked-LM / encoder (hub id or directory) with a tokenizer of one of had's families
  (NTv2 k-mers, BPE such as DNABERT-2, single nucleotide): loaded by `had.teacher.load_teacher`
  (the same path as the teacher cache), tokenized by its own files, padded on its own side; an
  unsupported tokenizer is refused in one line. Real NTv2 needs `trust_remote_code` (opt-in).

    backbone = load_backbone("runs/had/model")
    batch = backbone.encode(["ACGTN", "ACG"])          # input_ids, attention_mask int64 [2, T]
    model = SequenceClassifier(backbone.fresh_encoder(), backbone.hidden_size, n_classes=2)
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from had.data import alphabet
from had.data.padding import pad_rows

Encode = Callable[[Sequence[str]], dict[str, np.ndarray]]


@dataclass
class Backbone:
    """A pretrained encoder (kept pristine on CPU in fp32) and how DNA becomes its input ids."""

    name: str  # what the user passed: a directory or a hub id
    encoder: nn.Module  # forward(input_ids, attention_mask) -> .last_hidden_state [B, T, hidden_size]
    hidden_size: int
    encode: Encode  # sequences -> {"input_ids", "attention_mask"}: int64 [B, T], right padded
    fingerprint: str  # sha256 of its config and weights: results are kept per fingerprint, not per path
    max_tokens: int | None = None  # longest input its positions allow; None = no limit

    def fresh_encoder(self) -> nn.Module:
        """A trainable copy of the pretrained weights: every run starts from the same point."""
        return copy.deepcopy(self.encoder).train().requires_grad_(True)


def load_backbone(model: str, trust_remote_code: bool = False) -> Backbone:
    from had.teacher import load_teacher, local_model_config

    config = local_model_config(model, trust_remote_code)  # None for a hub id
    if config is not None and config.get("model_type") == "had":
        return _load_had(model)

    teacher = load_teacher(model, trust_remote_code=trust_remote_code, dtype="fp32", device="cpu")
    if Path(model).is_dir():
        fingerprint = _folder_fingerprint(Path(model))
    else:  # a hub model: its config (which names it), weights and tokenizer
        parts = f"{teacher.config_hash} {teacher.fingerprint} {teacher.tokenizer.vocab_hash}"
        fingerprint = hashlib.sha256(parts.encode()).hexdigest()
    return Backbone(model, teacher.encoder, teacher.hidden_size, teacher.tokenizer.batch_encode, fingerprint,
                    teacher.max_tokens)


def _load_had(model: str) -> Backbone:
    import had.student  # noqa: F401  (registers model_type "had" with AutoModel)
    from transformers import AutoModel
    from transformers.utils import logging

    # A `had train` dir holds the pretraining heads too; their "unexpected keys" report is noise here.
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        encoder = AutoModel.from_pretrained(model, dtype=torch.float32)
    finally:
        logging.set_verbosity(verbosity)
    config = encoder.config
    max_tokens = config.max_position if config.position == "learned" else None
    return Backbone(model, encoder, config.d_model, encode_nucleotides, _folder_fingerprint(Path(model)), max_tokens)


def _folder_fingerprint(folder: Path) -> str:
    """Fingerprint of a saved model: its config.json, weight and tokenizer files (`fingerprint`);
    the tokenizer decides the inputs, so other tokenizer files make another backbone."""
    from had.data.tokenizer_load import TOKENIZER_FILES
    from had.data.fingerprint import fingerprint
    from had.teacher import WEIGHT_SUFFIXES

    names = {"config.json", *TOKENIZER_FILES}
    return fingerprint(p for p in folder.iterdir() if p.name in names or p.suffix in WEIGHT_SUFFIXES)


def encode_nucleotides(seqs: Sequence[str]) -> dict[str, np.ndarray]:
    """The student's input: one id per nucleotide (IUPAC -> N), right padded with PAD."""
    input_ids, attention_mask = pad_rows([alphabet.encode(s) for s in seqs], alphabet.PAD)
    return {"input_ids": input_ids, "attention_mask": attention_mask}


class SequenceClassifier(nn.Module):
    """Encoder + mean pooling over real tokens (attention_mask == 1) + a linear head."""

    def __init__(self, encoder: nn.Module, hidden_size: int, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(hidden_size, n_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask [B, T] -> logits [B, n_classes] (fp32)."""
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, T, D]
        return self.head(mean_pool(h, attention_mask).float())


def mean_pool(h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of h [B, T, D] over the real tokens (attention_mask [B, T] == 1) of each row -> [B, D]."""
    m = attention_mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp_min(1)

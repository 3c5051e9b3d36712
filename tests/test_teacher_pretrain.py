"""Teacher pretraining: the MLM loss falls, and the saved directory is a teacher `had` reads."""
import json

import numpy as np
import pytest
import torch
from transformers import EsmForMaskedLM

from had.data import synthetic
from had.data.fasta import read_fasta
from had.data.masking import sample_kmers
from had.data.tokenizer import NTv2Tokenizer
from had.errors import HadError
from had.teacher import load_teacher
from had.teacher_pretrain import REPORT, TeacherPretrainConfig, pretrain_teacher

TINY = TeacherPretrainConfig(hidden_size=32, num_layers=1, num_heads=2, window=120, batch_size=16, steps=40,
                             lr=1e-2, log_every=10, val_windows=16, val_fraction=0.1)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher-pretrain")
    synthetic.write_genome(root / "genome.fa", seed=3, n_contigs=1, contig_length=30_000)
    report = pretrain_teacher(root / "genome.fa", root / "teacher", TINY)
    return root, report


def test_mlm_loss_falls_and_the_report_matches_a_fresh_read(pretrained):
    root, report = pretrained
    assert report.last_loss < report.first_loss - 0.05
    assert json.loads((root / "teacher" / REPORT).read_text())["val_accuracy"] == pytest.approx(report.val_accuracy)
    assert report.chance_uniform == 1 / 4096 and 0 < report.chance_majority < 1

    # The held-out loss, recomputed from the saved weights with plain transformers and the
    # same held-out windows (the tail of the contig, tiled) and masks.
    tok = NTv2Tokenizer.default()
    (_, codes), = read_fasta(root / "genome.fa")
    tail = codes[round(codes.size * (1 - TINY.val_fraction)):]
    windows = [tail[s : s + TINY.window] for s in range(0, tail.size - TINY.window + 1, TINY.window)][: TINY.val_windows]
    enc = tok.batch_encode(windows)
    masked = np.stack([sample_kmers(tok.is_kmer(row), TINY.mask_ratio, np.random.default_rng([TINY.seed, 8, i]))
                       for i, row in enumerate(enc["input_ids"])])
    labels = np.where(masked, enc["input_ids"], -100)
    inputs = np.where(masked, tok.mask_id, enc["input_ids"])
    model = EsmForMaskedLM.from_pretrained(root / "teacher").eval()
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(inputs), attention_mask=torch.from_numpy(enc["attention_mask"]),
                    labels=torch.from_numpy(labels))
    assert float(out.loss) == pytest.approx(report.val_loss, rel=1e-4)


def test_saved_directory_is_a_loadable_teacher(pretrained):
    root, report = pretrained
    teacher = load_teacher(str(root / "teacher"), device="cpu")
    assert teacher.hidden_size == TINY.hidden_size and teacher.num_hidden_layers == TINY.num_layers
    assert teacher.tokenizer.vocab_hash == NTv2Tokenizer.default().vocab_hash
    n_params = sum(p.numel() for p in EsmForMaskedLM.from_pretrained(root / "teacher").parameters())
    assert n_params == report.parameters


def test_mask_draws_only_kmers_at_the_ratio():
    tok = NTv2Tokenizer.default()
    ids = tok.encode("ACGTAC" * 40 + "NNA" + "GGCATT" * 20)  # CLS, 40 6-mers, 3 single tokens, 20 6-mers
    masked = sample_kmers(tok.is_kmer(ids), 0.15, np.random.default_rng(0))
    assert masked.sum() == round(0.15 * 60)
    assert tok.is_kmer(ids[masked]).all()


def test_genome_too_short_is_a_clear_error(tmp_path):
    synthetic.write_genome(tmp_path / "g.fa", seed=0, n_contigs=1, contig_length=500)
    with pytest.raises(HadError, match="too short"):
        pretrain_teacher(tmp_path / "g.fa", tmp_path / "t", TINY)


def test_a_finished_teacher_is_reused_only_for_the_same_config(pretrained, capsys):
    root, report = pretrained
    weights = (root / "teacher" / "model.safetensors").read_bytes()
    assert pretrain_teacher(root / "genome.fa", root / "teacher", TINY) == report
    assert "reusing" in capsys.readouterr().out
    assert (root / "teacher" / "model.safetensors").read_bytes() == weights

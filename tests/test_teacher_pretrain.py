"""Teacher pretraining: the MLM loss falls, the saved directory is a teacher `had` reads, a run resumes."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from transformers import EsmForMaskedLM

from had.data import alphabet, synthetic
from had.data.fasta import read_fasta
from had.data.masking import sample_tokens
from had.data.tokenizer import NTv2Tokenizer
from had.errors import HadError
from had.teacher import load_teacher
from had.teacher_pretrain import (PARTIAL_STATE, REPORT, TeacherPretrainConfig, _crop, _n_free_starts, corrupt,
                                  pretrain_teacher, save_initialisation)

TINY = TeacherPretrainConfig(hidden_size=32, num_layers=1, num_heads=2, window=120, batch_size=16, steps=80,
                             lr=1e-2, log_every=10, val_windows=16, val_fraction=0.1)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    # A genome the MLM can learn in 80 steps: copies of one random 60-nt unit (6 reading frames
    # x 10 6-mers), with an N gap that training and held-out windows must avoid.
    root = tmp_path_factory.mktemp("teacher-pretrain")
    unit = "".join(np.random.default_rng(0).choice(list("ACGT"), 60))
    (root / "genome.fa").write_text(">rep\n" + unit * 300 + "N" * 50 + unit * 200 + "\n")
    report = pretrain_teacher(root / "genome.fa", root / "teacher", TINY)
    return root, report


def test_mlm_loss_falls_and_the_report_matches_a_fresh_read(pretrained):
    root, report = pretrained
    assert report.last_loss < report.first_loss - 1.0
    assert report.val_accuracy > 2 * report.chance_majority
    assert report.val_loss < report.unigram_loss - 0.5  # it uses the context
    assert json.loads((root / "teacher" / REPORT).read_text())["val_accuracy"] == pytest.approx(report.val_accuracy)
    assert report.chance_uniform == 1 / 4096 and 0 < report.chance_majority < 1

    # The held-out loss, recomputed from the saved weights with plain transformers and the
    # same held-out windows (the tail of the contig, tiled) and masks.
    tok = NTv2Tokenizer.default()
    (_, codes), = read_fasta(root / "genome.fa")
    tail = codes[round(codes.size * (1 - TINY.val_fraction)):]
    windows = [tail[s : s + TINY.window] for s in range(0, tail.size - TINY.window + 1, TINY.window)]
    windows = [w for w in windows if not (w == alphabet.N).any()][: TINY.val_windows]
    enc = tok.batch_encode(windows)
    masked = np.stack([sample_tokens(tok.is_kmer(row), TINY.mask_ratio, np.random.default_rng([TINY.seed, 8, i]))
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
    masked = sample_tokens(tok.is_kmer(ids), 0.15, np.random.default_rng(0))
    assert masked.sum() == round(0.15 * 60)
    assert tok.is_kmer(ids[masked]).all()


def test_corruption_follows_berts_rule_on_the_chosen_tokens_only():
    tok = NTv2Tokenizer.default()
    rng = np.random.default_rng(0)
    ids = tok.batch_encode([rng.integers(0, 4, 600).astype(np.uint8) for _ in range(200)])["input_ids"]
    chosen = np.stack([sample_tokens(tok.is_kmer(row), 0.15, rng) for row in ids])
    inputs = corrupt(ids, chosen, tok, 0.1, 0.1, np.random.default_rng(1))
    assert (inputs[~chosen] == ids[~chosen]).all()
    got, want = inputs[chosen], ids[chosen]
    masked, same = got == tok.mask_id, got == want
    swapped = ~masked & ~same
    n = chosen.sum()  # 3000 chosen tokens: each share within 4 standard errors
    for share, p in ((masked.mean(), 0.8), (swapped.mean(), 0.1 * 4095 / 4096), (same.mean(), 0.1 + 0.1 / 4096)):
        assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / n)
    assert tok.is_kmer(got[swapped]).all()
    assert len(np.unique(got[swapped])) > 0.5 * swapped.sum()  # drawn over the 6-mers, not a few ids
    pure = corrupt(ids, chosen, tok, 0.0, 0.0, np.random.default_rng(1))
    assert (pure == np.where(chosen, tok.mask_id, ids)).all()


@pytest.mark.parametrize("random_fraction, keep_fraction", [(0.6, 0.5), (-0.1, 0.1)])
def test_corruption_fractions_are_checked(tmp_path, random_fraction, keep_fraction):
    cfg = TeacherPretrainConfig(random_fraction=random_fraction, keep_fraction=keep_fraction)
    with pytest.raises(HadError, match="random_fraction"):
        pretrain_teacher(tmp_path / "missing.fa", tmp_path / "t", cfg)


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
    # a report written before the corruption settings existed was mask-only: reused as such
    saved = json.loads((root / "teacher" / REPORT).read_text())
    older = {**saved, "config": {k: v for k, v in saved["config"].items() if k not in ("random_fraction", "keep_fraction")}}
    (root / "teacher" / REPORT).write_text(json.dumps(older))
    assert pretrain_teacher(root / "genome.fa", root / "teacher", TINY).val_loss == report.val_loss
    assert "reusing" in capsys.readouterr().out


class Crash(Exception):
    pass


def crash_at_step(monkeypatch, step: int) -> None:
    """Make the training loop die inside its `step`-th step (1-based), as a kill would, after the forward."""
    clip, calls = torch.nn.utils.clip_grad_norm_, []

    def clip_or_crash(*args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            raise Crash
        return clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_or_crash)


def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(pretrained, tmp_path, monkeypatch, capsys):
    root, report = pretrained
    crash_at_step(monkeypatch, 50)
    with pytest.raises(Crash):
        pretrain_teacher(root / "genome.fa", tmp_path / "teacher", TINY, checkpoint_every=20)
    monkeypatch.undo()
    assert (tmp_path / "teacher.partial" / PARTIAL_STATE).is_file() and not (tmp_path / "teacher").exists()

    resumed = pretrain_teacher(root / "genome.fa", tmp_path / "teacher", TINY, checkpoint_every=20)
    assert "resuming at step 40" in capsys.readouterr().out
    weights = "model.safetensors"
    assert (tmp_path / "teacher" / weights).read_bytes() == (root / "teacher" / weights).read_bytes()
    assert {**vars(resumed), "seconds": 0} == {**vars(report), "seconds": 0}
    assert not (tmp_path / "teacher.partial").exists()


def test_a_checkpoint_of_other_settings_is_discarded(pretrained, tmp_path, monkeypatch, capsys):
    root, _ = pretrained
    short = dataclasses.replace(TINY, steps=30)
    fresh = pretrain_teacher(root / "genome.fa", tmp_path / "fresh", short)
    crash_at_step(monkeypatch, 25)
    with pytest.raises(Crash):
        pretrain_teacher(root / "genome.fa", tmp_path / "t", dataclasses.replace(short, lr=5e-3), checkpoint_every=10)
    monkeypatch.undo()
    capsys.readouterr()
    assert pretrain_teacher(root / "genome.fa", tmp_path / "t", short, checkpoint_every=10).val_loss == fresh.val_loss
    assert "other settings" in capsys.readouterr().out


def test_the_saved_initialisation_is_where_training_starts(pretrained, tmp_path):
    root, _ = pretrained
    still = dataclasses.replace(TINY, steps=2, lr=0.0)  # AdamW at lr 0 leaves every weight as it was
    pretrain_teacher(root / "genome.fa", tmp_path / "still", still)
    save_initialisation(tmp_path / "init", still)
    trained = EsmForMaskedLM.from_pretrained(tmp_path / "still").state_dict()
    init = EsmForMaskedLM.from_pretrained(tmp_path / "init").state_dict()
    assert trained.keys() == init.keys() and all(torch.equal(trained[k], init[k]) for k in init)
    other = EsmForMaskedLM.from_pretrained(save_initialisation(tmp_path / "other", dataclasses.replace(still, seed=1)))
    assert not torch.equal(other.state_dict()["lm_head.dense.weight"], init["lm_head.dense.weight"])


def test_training_crops_are_the_n_free_windows_uniformly():
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 4, size=n).astype(np.uint8) for n in (60, 25, 8)]
    parts[0][[5, 40, 41]] = alphabet.N
    parts[1][24] = alphabet.N
    window = 10
    starts = [_n_free_starts(p, window) for p in parts]
    for p, s in zip(parts, starts):  # brute force
        assert s.tolist() == [i for i in range(p.size - window + 1) if not (p[i : i + window] == alphabet.N).any()]
    seen = {}
    for _ in range(4000):
        w = _crop(parts, starts, window, rng)
        assert w.size == window and not (w == alphabet.N).any()
        seen[w.tobytes()] = seen.get(w.tobytes(), 0) + 1
    n_windows = sum(s.size for s in starts)
    assert len(seen) == n_windows  # every N-free window drawn ...
    assert max(seen.values()) < 3 * 4000 / n_windows  # ... about equally often

"""BPE (real DNABERT-2 tokenizer) and single-nucleotide (HyenaDNA-style) teachers end to end through the CLI:
cache-teacher -> train -> eval, each cache item checked against HF's own tokenizer and a direct BertModel
forward; other teachers' caches and unsupported tokenizers refused in one line."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from dna_teachers import bert_teacher, char_tokenizer
from transformers import BertModel, PreTrainedTokenizerFast
from typer.testing import CliRunner

from had.cache_store import CacheReader
from had.cli import app
from had.data import alphabet, synthetic

DNABERT2 = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "dnabert2"
runner = CliRunner()


def _ok(argv):
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, f"had {' '.join(argv)} failed:\n{result.output}\n{result.exception!r}"
    return result.output


def _refused(argv) -> str:
    result = runner.invoke(app, argv)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    return result.output


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    if not DNABERT2.is_dir():
        pytest.skip(f"{DNABERT2} absent (the shared reference data is not mounted)")
    root = tmp_path_factory.mktemp("families")
    synthetic.write_genome(root / "genome.fa", seed=5, n_contigs=2, contig_length=3_000)
    synthetic.write_tasks(root / "nt", "nt", seed=5, n_train=32, n_test=16, length=120, tasks=["promoter_tata"])
    char_tokenizer(root / "hyena_tokenizer", "hyena")
    bert_teacher(root / "bpe", DNABERT2)
    bert_teacher(root / "char", root / "hyena_tokenizer")
    return root


def _check_items(cache: Path, teacher: Path, n: int = 6):
    """Spans = HF offsets, masks whole tokens, features = BertModel on the HF ids with [MASK] at masked tokens."""
    reader = CacheReader(str(cache))
    hf = PreTrainedTokenizerFast.from_pretrained(teacher)
    model = BertModel.from_pretrained(teacher, add_pooling_layer=False).eval()
    for i in range(n):
        item = reader[i]
        text = alphabet.decode(item.nucleotides)
        enc = hf(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        seq = [j for j, special in enumerate(enc["special_tokens_mask"]) if not special]
        assert [(s, s + n) for s, n in item.spans.tolist()] == [enc["offset_mapping"][j] for j in seq]
        expected_nt = np.zeros(len(text), bool)
        for s, n in item.spans[item.token_masked]:
            expected_nt[s:s + n] = True
        assert np.array_equal(item.nt_mask, expected_nt) and item.token_masked.any()
        ids = np.array(enc["input_ids"])
        ids[np.array(seq)[item.token_masked]] = hf.mask_token_id
        with torch.no_grad():
            out = model(input_ids=torch.from_numpy(ids)[None]).last_hidden_state[0].numpy()
        np.testing.assert_allclose(item.features, out[np.array(seq)[~item.token_masked]], atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("family", ["bpe", "char"])
def test_family_caches_trains_and_evals_end_to_end(inputs, family):
    root, teacher = inputs, inputs / family
    cache, run, ev = root / f"cache-{family}", root / f"run-{family}", root / f"eval-{family}"
    _ok(["cache-teacher", "--config", "tiny", "--fasta", str(root / "genome.fa"), "--teacher", str(teacher),
         "--out", str(cache), "--shard-windows", "8"])
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["tokenizer_family"] == family and manifest["teacher_dim"] == 32
    assert manifest["tokenizer_specials"] == {"bpe": 2, "char": 1}[family]  # [CLS] .. [SEP]; .. [SEP]
    _check_items(cache, teacher)

    _ok(["train", "--config", "tiny", "--cache", str(cache), "--out", str(run), "--steps", "3", "--log-every", "1"])
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(line.get("step", 0) for line in lines) == 3
    distill = [line["loss_distill"] for line in lines if "loss_distill" in line]
    assert distill and np.isfinite(distill).all()

    for model, out in ((run / "model", ev / "student"), (teacher, ev / "teacher")):  # the teacher as a backbone too
        table = _ok(["eval", "--config", "tiny", "--model", str(model), "--data-root", str(root / "nt"),
                     "--benchmark", "nt", "--seeds", "1", "--epochs", "1", "--out", str(out)])
        assert "promoter_tata" in table and (out / "summary.md").is_file()


def test_span_tokens_masks_contiguous_runs_of_a_char_teacher(inputs):
    root = inputs
    cache = root / "cache-char-spans"
    _ok(["cache-teacher", "--config", "tiny", "--fasta", str(root / "genome.fa"), "--teacher", str(root / "char"),
         "--out", str(cache), "--shard-windows", "8", "--set", "mask.span_tokens=8"])
    item = CacheReader(str(cache))[0]
    runs = np.flatnonzero(item.nt_mask).reshape(-1, 8)
    assert (runs[:, 0] % 8 == 0).all() and (np.diff(runs, axis=1) == 1).all()


def test_a_cache_of_one_teacher_is_refused_for_another(inputs):
    root = inputs
    cache = root / "cache-refused"
    base = ["cache-teacher", "--config", "tiny", "--fasta", str(root / "genome.fa"), "--out", str(cache)]
    _ok(base + ["--teacher", str(root / "char")])
    out = _refused(base + ["--teacher", str(root / "bpe")])
    assert "different config" in out and "tokenizer_family" in out and "vocab_hash" in out


def test_unsupported_or_mismatched_tokenizers_are_refused_up_front(inputs, tmp_path):
    root = inputs
    wordpiece = tmp_path / "wordpiece"
    shutil.copytree(root / "bpe", wordpiece)
    spec = json.loads((wordpiece / "tokenizer.json").read_text())
    spec["model"] = {"type": "WordPiece", "vocab": {"[UNK]": 0, "ACG": 1}, "unk_token": "[UNK]"}
    (wordpiece / "tokenizer.json").write_text(json.dumps(spec))
    small = tmp_path / "small"  # a 12-token BERT given DNABERT-2's 4096-token files
    bert_teacher(small, root / "hyena_tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(DNABERT2 / name, small / name)
    base = ["cache-teacher", "--config", "tiny", "--fasta", str(root / "genome.fa")]
    out = _refused(base + ["--teacher", str(wordpiece), "--out", str(tmp_path / "c1")])
    assert "unsupported tokenizer" in out and not (tmp_path / "c1").exists()
    out = _refused(base + ["--teacher", str(small), "--out", str(tmp_path / "c2")])
    assert "4096 tokens but its embedding only 12" in out
    out = _refused(base + ["--teacher", str(root / "char"), "--out", str(tmp_path / "c3"), "--window", "600"])
    assert "genome.window=600: at least 601 teacher tokens" in out and "at most 512" in out
    out = _refused(["eval", "--config", "tiny", "--model", str(wordpiece), "--data-root", str(root / "nt"),
                    "--benchmark", "nt", "--out", str(tmp_path / "e")])
    assert "unsupported tokenizer" in out


def test_interrupted_bpe_cache_resumes_to_the_same_files(inputs, tmp_path):
    """Shards whose commit records are gone (a run killed after writing them) are redone, bit for bit."""
    root = inputs
    argv = ["cache-teacher", "--config", "tiny", "--fasta", str(root / "genome.fa"), "--teacher", str(root / "bpe"),
            "--shard-windows", "8"]
    _ok(argv + ["--out", str(tmp_path / "full")])
    shutil.copytree(tmp_path / "full", tmp_path / "cut")
    (tmp_path / "cut" / "manifest.json").unlink()
    commits = sorted((tmp_path / "cut" / "_commit").iterdir())
    for path in commits[1::2]:
        path.unlink()
    assert "resuming" in _ok(argv + ["--out", str(tmp_path / "cut")])

    def files(root):
        out = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != "config.yaml"}
        manifest = json.loads(out.pop(Path("manifest.json")))
        manifest.pop("created"), manifest.pop("sources")
        return out, manifest

    assert files(tmp_path / "cut") == files(tmp_path / "full")

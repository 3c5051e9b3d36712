"""Backbones and the fine-tuning protocol: same code path as real NTv2, best-val weights, determinism."""
import json
import math

import numpy as np
import pytest
import torch

from had.data.benchmarks import load_task
from had.data.tokenizer import NTv2Tokenizer
from had.errors import HadError
from had.evaluation import finetune as ft
from had.evaluation.backbones import SequenceClassifier, load_backbone
from had.schedules import warmup_cosine

CPU = torch.device("cpu")


def test_hf_backbone_goes_through_the_teacher_path_with_ntv2_tokens(tiny_esm):
    from transformers import EsmModel

    backbone = load_backbone(str(tiny_esm))
    assert isinstance(backbone.encoder, EsmModel) and backbone.hidden_size == 16
    seqs = ["ACGTACGTNNACGTAC", "GGG"]
    got = backbone.encode(seqs)
    want = NTv2Tokenizer.from_dir(tiny_esm).batch_encode(seqs)
    np.testing.assert_array_equal(got["input_ids"], want["input_ids"])
    assert got["input_ids"][0, 0] == NTv2Tokenizer.default().cls_id


def test_remote_code_checkpoint_needs_the_opt_in(tiny_esm, tmp_path):
    config = json.loads((tiny_esm / "config.json").read_text())
    config["auto_map"] = {"AutoModelForMaskedLM": "modeling_esm.EsmForMaskedLM"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(HadError, match="trust-remote-code"):
        load_backbone(str(tmp_path))


def test_paths_that_cannot_be_a_model_are_named(tiny_esm, tmp_path, monkeypatch):
    """--model: a missing local path, a file, a folder without weights (an HF model's or a had student's)."""
    import shutil

    from had.student import HadConfig
    from had.student.modeling_had import HadForPretraining

    monkeypatch.chdir(tmp_path)
    for missing in ("runs/nosuch/model", "./model", str(tmp_path / "model")):
        with pytest.raises(HadError, match=f"^no such directory: {missing}$"):
            load_backbone(missing)
    (tmp_path / "seqs.fa").write_text(">a\nACGT\n")
    with pytest.raises(HadError, match="seqs.fa is a file, expected a model directory or hub id"):
        load_backbone("seqs.fa")
    (tmp_path / "noweights").mkdir()
    shutil.copyfile(tiny_esm / "config.json", tmp_path / "noweights" / "config.json")
    with pytest.raises(HadError, match=r"noweights has config.json but no weights \(model.safetensors or pytorch"):
        load_backbone("noweights")
    HadForPretraining(HadConfig(d_model=16, n_gdn_layers=1, n_heads=2, head_dim=8, mlp_hidden=32, attn_heads=2,
                                teacher_dim=8, gdn_impl="naive")).save_pretrained(tmp_path / "student")
    (tmp_path / "student" / "model.safetensors").unlink()
    with pytest.raises(HadError, match="student has config.json but no weights"):
        load_backbone("student")


def test_had_student_dir_loads_through_automodel(tmp_path):
    from had.student import HadConfig
    from had.student.modeling_had import HadForPretraining

    cfg = HadConfig(d_model=16, n_gdn_layers=1, n_heads=2, head_dim=8, mlp_hidden=32, attn_heads=2,
                    teacher_dim=8, gdn_impl="naive")
    torch.manual_seed(0)
    pretrained = HadForPretraining(cfg)
    pretrained.save_pretrained(tmp_path)
    backbone = load_backbone(str(tmp_path))
    assert backbone.hidden_size == 16
    enc = backbone.encode(["ACGTRN", "AC"])
    np.testing.assert_array_equal(enc["input_ids"], [[0, 1, 2, 3, 4, 4], [0, 1, 6, 6, 6, 6]])
    ids, mask = torch.from_numpy(enc["input_ids"]), torch.from_numpy(enc["attention_mask"])
    want = pretrained.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
    got = backbone.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got, want)


def test_fingerprint_is_the_model_files_and_follows_a_retrain(tmp_path, tiny_esm):
    import hashlib
    import shutil

    from had.student import HadConfig
    from had.student.modeling_had import HadForPretraining

    cfg = HadConfig(d_model=16, n_gdn_layers=1, n_heads=2, head_dim=8, mlp_hidden=32, attn_heads=2, teacher_dim=8)
    torch.manual_seed(0)
    HadForPretraining(cfg).save_pretrained(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["config.json", "model.safetensors"]
    want = hashlib.sha256(b"".join(name.encode() + (tmp_path / "m" / name).read_bytes() for name in files))
    assert load_backbone(str(tmp_path / "m")).fingerprint == want.hexdigest()
    HadForPretraining(cfg).save_pretrained(tmp_path / "m")  # retrained in place: new weights, same path
    assert load_backbone(str(tmp_path / "m")).fingerprint != want.hexdigest()
    # HF models: the same files wherever they are give the same fingerprint, other weights another one
    shutil.copytree(tiny_esm, tmp_path / "esm")
    assert load_backbone(str(tmp_path / "esm")).fingerprint == load_backbone(str(tiny_esm)).fingerprint
    from had.teacher import build_tiny_teacher

    build_tiny_teacher(tmp_path / "esm", hidden_size=16, num_layers=1, num_heads=2, seed=1)
    assert load_backbone(str(tmp_path / "esm")).fingerprint != load_backbone(str(tiny_esm)).fingerprint
    # ... and other tokenizer files another one (they decide the input ids)
    shutil.copytree(tiny_esm, tmp_path / "esm2")
    (tmp_path / "esm2" / "special_tokens_map.json").write_text('{"cls_token": "<cls>", "pad_token": "<pad>"}')
    assert load_backbone(str(tmp_path / "esm2")).fingerprint != load_backbone(str(tiny_esm)).fingerprint


def test_mean_pooling_ignores_padding(tiny_esm):
    backbone = load_backbone(str(tiny_esm))
    model = SequenceClassifier(backbone.fresh_encoder(), backbone.hidden_size, 3).eval()
    alone = backbone.encode(["ACGTACGTACGTA"])
    padded = backbone.encode(["ACGTACGTACGTA", "ACGTACGTACGTAACGTACGTACGTTTTTTAAAAAA"])
    with torch.no_grad():
        a = model(torch.from_numpy(alone["input_ids"]), torch.from_numpy(alone["attention_mask"]))
        b = model(torch.from_numpy(padded["input_ids"]), torch.from_numpy(padded["attention_mask"]))
        h = backbone.encoder(input_ids=torch.from_numpy(alone["input_ids"])).last_hidden_state
    torch.testing.assert_close(b[:1], a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a, model.head(h.mean(1)), atol=1e-5, rtol=1e-5)


def test_sequences_longer_than_the_model_takes_are_refused(tiny_esm, gue_root):
    backbone = load_backbone(str(tiny_esm))
    backbone.max_tokens = 5  # grp/a sequences are 36 nt: CLS + 6 six-mers = 7 tokens
    task = load_task("gue", gue_root, "grp/a")
    with pytest.raises(HadError, match=r"train.csv: sequences of 7 tokens, .* at most 5: set eval.max_length"):
        ft.prepare(task, backbone, ft.Protocol(epochs=1))
    data = ft.prepare(task, backbone, ft.Protocol(epochs=1, max_length=24))  # CLS + 4 six-mers
    assert data.train.input_ids.shape[1] == 5


def test_warmup_cosine_and_split():
    f = warmup_cosine(100, 0.1)
    lrs = [f(s) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == 1.0 and max(lrs) == 1.0
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 0.01
    tr, va = ft.train_val_split(50, 0.1, seed=3)
    assert len(va) == 5 and sorted(torch.cat([tr, va]).tolist()) == list(range(50))
    tr2, va2 = ft.train_val_split(50, 0.1, seed=3)
    assert torch.equal(va, va2) and not torch.equal(va, ft.train_val_split(50, 0.1, seed=4)[1])


def _prepared(tiny_esm, root, name="grp/a", **protocol):
    backbone = load_backbone(str(tiny_esm))
    proto = ft.Protocol(**{"epochs": 3, "batch_size": 8, **protocol})
    return backbone, ft.prepare(load_task("gue", root, name), backbone, proto), proto


def test_best_validation_epoch_weights_are_scored_on_test(tiny_esm, gue_root, monkeypatch):
    backbone, data, proto = _prepared(tiny_esm, gue_root)
    scripted = iter([0.1, 0.5, 0.3])  # validation scores of epochs 1..3: epoch 2 is best
    seen = []
    real_evaluate = ft.evaluate

    def fake_evaluate(model, split, *args):
        seen.append((split, model.head.weight.detach().clone()))
        return next(scripted) if split is not data.test else real_evaluate(model, split, *args)

    monkeypatch.setattr(ft, "evaluate", fake_evaluate)
    row = ft.finetune(backbone, data, 1e-3, 0, proto, CPU)
    assert (row["best_epoch"], row["val_metric"]) == (2, 0.5)
    assert seen[-1][0] is data.test
    torch.testing.assert_close(seen[-1][1], seen[1][1], rtol=0, atol=0)
    assert not torch.equal(seen[-1][1], seen[2][1])


def test_a_run_is_deterministic_and_learns(tiny_esm, gue_root):
    backbone, data, proto = _prepared(tiny_esm, gue_root, epochs=3)
    a = ft.finetune(backbone, data, 1e-2, 1, proto, CPU)
    b = ft.finetune(backbone, data, 1e-2, 1, proto, CPU)
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    assert (a["n_train"], a["n_val"], a["n_test"]) == (48, 24, 24)
    assert a["metric"] == "mcc" and a["test_metric"] > 0.5  # the GC-content task is learnable


def test_val_split_of_train_when_no_dev_and_max_train_samples(tiny_esm, gue_root):
    backbone, data, proto = _prepared(tiny_esm, gue_root, epochs=1, max_train_samples=30, val_fraction=0.2)
    data.val = None  # as for NT / GB tasks
    row = ft.finetune(backbone, data, 1e-3, 0, proto, CPU)
    assert (row["n_train"], row["n_val"]) == (24, 6) and math.isfinite(row["test_metric"])


def test_one_training_row_without_a_dev_split_is_a_clear_error(tiny_esm, gue_root):
    task = load_task("gue", gue_root, "grp/a")
    task.dev = None  # as for NT / GB tasks
    with pytest.raises(HadError, match="1 training row"):
        ft.prepare(task, load_backbone(str(tiny_esm)), ft.Protocol(epochs=1, max_train_samples=1))


def test_short_real_finetuning_on_gue(tiny_esm, real_gue):
    task = load_task("gue", real_gue, "prom/prom_core_tata")
    backbone = load_backbone(str(tiny_esm))
    proto = ft.Protocol(epochs=1, batch_size=32, max_train_samples=300)
    data = ft.prepare(task, backbone, proto)
    row = ft.finetune(backbone, data, 1e-3, 0, proto, CPU)
    assert (row["n_train"], row["n_val"], row["n_test"]) == (300, len(task.dev), len(task.test))
    assert -1 <= row["test_metric"] <= 1 and row["best_epoch"] == 1

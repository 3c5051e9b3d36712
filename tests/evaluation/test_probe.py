"""The linear-probe protocol against a direct scikit-learn computation, and its sweep (resumable, reported)."""
import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, matthews_corrcoef
from typer.testing import CliRunner

from had.cli import app
from had.config import EvalConfig
from had.data import synthetic
from had.data.benchmarks import load_task
from had.errors import HadError
from had.evaluation import probe, sweep
from had.evaluation.report import markdown, summarize
from had.evaluation.results import read_results


@pytest.fixture
def student(tmp_path):
    from had.student import HadConfig
    from had.student.modeling_had import HadForPretraining

    torch.manual_seed(0)
    HadForPretraining(HadConfig(d_model=16, n_gdn_layers=1, n_heads=2, head_dim=8, mlp_hidden=32, attn_heads=2,
                                teacher_dim=8, gdn_impl="naive")).save_pretrained(tmp_path / "student")
    return tmp_path / "student"


@pytest.fixture
def nt_root(tmp_path):
    """A synthetic NT-layout task (no dev split: validation rows come from the seed's split of train)."""
    synthetic.write_tasks(tmp_path / "nt", "nt", seed=1, n_train=80, n_test=40, length=100, tasks=["promoter_tata"])
    return tmp_path / "nt"


def _direct_features(model_dir, kind, seqs):
    """Mean over real tokens of the last hidden states, computed here with plain transformers + numpy."""
    from transformers import AutoModel

    if kind == "esm":
        from had.data.tokenizer import NTv2Tokenizer

        enc = NTv2Tokenizer.from_dir(model_dir).batch_encode(seqs)
        ids, mask = enc["input_ids"], enc["attention_mask"]
    else:
        import had.student  # noqa: F401  (AutoModel knows model_type "had")

        lut = {b: i for i, b in enumerate("ACGT")}
        width = max(map(len, seqs))
        ids, mask = np.full((len(seqs), width), 6), np.zeros((len(seqs), width), dtype=np.int64)  # 6 = PAD
        for row, s in enumerate(seqs):
            ids[row, : len(s)] = [lut.get(c, 4) for c in s]
            mask[row, : len(s)] = 1
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        h = model(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask)).last_hidden_state.numpy()
    return (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)


def _direct_probe(x_train, y_train, x_val, y_val, x_test, y_test, metric):
    mu, sd = x_train.mean(0), x_train.std(0)
    sd[sd == 0] = 1
    z = [(x - mu) / sd for x in (x_train, x_val, x_test)]
    scorer = {"mcc": matthews_corrcoef, "f1": lambda a, b: f1_score(a, b, zero_division=0)}[metric]
    fits = [(scorer(y_val, m.predict(z[1])), c, m) for c in (1e-3, 1e-2, 1e-1, 1.0, 10.0)
            for m in [LogisticRegression(C=c, max_iter=2000).fit(z[0], y_train)]]
    best = max(fits, key=lambda f: f[0])  # the first (smallest C) on ties
    return best[0], scorer(y_test, best[2].predict(z[2])), best[1]


@pytest.mark.parametrize("kind", ["esm", "had"])
def test_probe_is_the_direct_sklearn_computation(kind, tiny_esm, student, gue_root, nt_root, tmp_path):
    model = tiny_esm if kind == "esm" else student
    for benchmark, root, task in (("gue", gue_root, "grp/a"), ("nt", nt_root, "promoter_tata")):
        cfg = EvalConfig(model=str(model), data_root=str(root), benchmark=benchmark, tasks=[task], seeds=2,
                         protocol="probe", batch_size=7, out=str(tmp_path), device="cpu")
        rows = sweep.run_sweep(cfg, tmp_path / f"{kind}-{benchmark}.parquet")
        data = load_task(benchmark, root, task)
        x_train = _direct_features(model, kind, data.train.sequences)
        x_test = _direct_features(model, kind, data.test.sequences)
        for row in rows:
            if data.dev is not None:
                split = (x_train, data.train.labels, _direct_features(model, kind, data.dev.sequences), data.dev.labels)
            else:  # the seed's 10% of train, drawn as the protocol documents it
                order = np.random.default_rng(row["seed"]).permutation(len(data.train.labels))
                val, train = order[: round(0.1 * len(order))], order[round(0.1 * len(order)):]
                split = (x_train[train], data.train.labels[train], x_train[val], data.train.labels[val])
            val_metric, test_metric, c = _direct_probe(*split, x_test, data.test.labels, row["metric"])
            assert row["lr"] is None and row["epochs"] == 0 and json.loads(row["protocol"])["kind"] == "probe"
            assert (row["val_metric"], row["test_metric"], row["probe_c"]) == pytest.approx((val_metric, test_metric, c))
        assert {r["seed"] for r in rows} == {0, 1}


def test_probe_sweep_resumes_and_reports_like_fine_tuning(tiny_esm, gue_root, tmp_path, monkeypatch):
    cfg = EvalConfig(model=str(tiny_esm), data_root=str(gue_root), benchmark="gue", seeds=2, protocol="probe",
                     lrs=[1e-3, 3e-3], out=str(tmp_path), device="cpu")
    first = sweep.run_sweep(cfg, tmp_path / "r.parquet")
    assert [(r["task"], r["seed"]) for r in first] == [("grp/a", 0), ("grp/a", 1), ("grp/b", 0), ("grp/b", 1)]
    assert read_results(tmp_path / "r.parquet") == first

    calls = []
    monkeypatch.setattr(sweep, "probe", lambda *a: calls.append(a))
    assert sweep.run_sweep(cfg, tmp_path / "r.parquet") == first and calls == []  # all reused

    table = markdown(summarize(first))
    assert "| grp/a | mcc |" in table and "@" not in table.split("## gue")[1]  # no lr to show
    cfg.protocol = "finetune"  # the other protocol into the same file: refused, never mixed
    with pytest.raises(HadError, match=r"made with epochs=0 \(now 10\), kind=probe \(now finetune\)"):
        sweep.run_sweep(cfg, tmp_path / "r.parquet")


def test_probe_features_ignore_padding_and_batching(tiny_esm, gue_root):
    from had.evaluation.backbones import load_backbone
    from had.evaluation.finetune import Protocol, prepare

    backbone = load_backbone(str(tiny_esm))
    data = prepare(load_task("gue", gue_root, "grp/b"), backbone, Protocol(epochs=0, kind="probe"))
    one = probe.task_features(backbone, data, 1, torch.device("cpu"))
    many = probe.task_features(backbone, data, 64, torch.device("cpu"))
    np.testing.assert_allclose(one.train.x, many.train.x, atol=1e-5)
    np.testing.assert_array_equal(one.test.y, data.test.labels.numpy())


def test_cli_probe_and_a_bad_protocol(tiny_esm, gue_root, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "--config", "tiny", "--model", str(tiny_esm), "--data-root", str(gue_root),
                                 "--benchmark", "gue", "--task", "grp/a", "--seeds", "1", "--protocol", "probe",
                                 "--device", "cpu", "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    (row,) = read_results(tmp_path / "e" / "results.parquet")
    assert json.loads(row["protocol"])["kind"] == "probe" and row["probe_c"] in probe.C_GRID
    result = runner.invoke(app, ["eval", "--config", "tiny", "--model", str(tiny_esm), "--data-root", str(gue_root),
                                 "--benchmark", "gue", "--protocol", "lasso", "--out", str(tmp_path / "f")])
    assert result.exit_code == 1 and "eval.protocol='lasso': must be one of finetune, probe" in result.output
    assert "Traceback" not in result.output

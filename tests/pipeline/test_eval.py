"""`had eval` end to end: a student and a teacher evaluated, reported, compared, resumed."""
import csv

import numpy as np
import pytest
import torch

from had.config import load_config
from had.errors import HadError
from had.evaluation.results import read_results
from had.pipeline import eval as pipeline


def _nt_task(root, name, seed, n=24, length=24):
    """NT layout (parquet and fna give the same data; fna here): GC-rich sequences are class 1."""
    rng = np.random.default_rng(seed)
    (root / name).mkdir(parents=True)
    for split in ("train", "test"):
        with (root / name / f"{split}.fna").open("w") as f:
            for i, y in enumerate(rng.permutation(np.arange(n) % 2)):
                p = [0.05, 0.45, 0.45, 0.05] if y else [0.45, 0.05, 0.05, 0.45]
                f.write(f">{split}{i}|{y}\n{''.join(rng.choice(list('ACGT'), size=length, p=p))}\n")
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from had.student import HadConfig
    from had.student.modeling_had import HadForPretraining
    from had.teacher import build_tiny_teacher

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    # naive GDN: at 24 nucleotides the plain recurrence is several times faster on CPU than the chunked path
    HadForPretraining(HadConfig(d_model=16, n_gdn_layers=1, n_heads=2, head_dim=8, mlp_hidden=32, attn_heads=2,
                                teacher_dim=16, gdn_impl="naive")).save_pretrained(root / "student" / "model")
    teacher = build_tiny_teacher(root / "teacher", hidden_size=16, num_layers=1, num_heads=2)
    return root / "student" / "model", teacher


def _cfg(model, data_root, out):
    return load_config("tiny", {
        "eval.model": str(model), "eval.data_root": str(data_root), "eval.benchmark": "nt",
        "eval.nt_version": "original", "eval.out": str(out), "eval.epochs": 1, "eval.seeds": 2,
        "eval.lrs": [2e-3], "eval.batch_size": 16,
    })


def test_eval_student_and_teacher_then_compare(models, tmp_path, capsys):
    student, teacher = models
    data = _nt_task(tmp_path / "nt", "H3", seed=0)
    _nt_task(data, "promoter_tata", seed=1)

    summary = pipeline.run(_cfg(student, data, tmp_path / "eval_student"))
    assert [(r.model, r.task, r.metric, r.seeds) for r in summary] == [
        ("student", "H3", "mcc", 2), ("student", "promoter_tata", "f1", 2)]
    out = tmp_path / "eval_student"
    assert (out / "summary.md").is_file() and (out / "summary.png").is_file() and (out / "config.yaml").is_file()
    rows = read_results(out / "results.parquet")
    assert len(rows) == 4 and {r["nt_version"] for r in rows} == {"original"}
    assert all(r["n_train"] + r["n_val"] == 24 and r["n_test"] == 24 for r in rows)
    for s in summary:  # the summary is the mean over seeds of the file's test metrics
        tests = [r["test_metric"] for r in rows if r["task"] == s.task]
        assert s.mean == pytest.approx(np.mean(tests)) and s.spread == pytest.approx(np.ptp(tests))

    pipeline.run(_cfg(teacher, data, tmp_path / "eval_teacher"))
    capsys.readouterr()
    both = pipeline.compare([str(tmp_path / "eval_student"), str(tmp_path / "eval_teacher")], str(tmp_path / "cmp"))
    assert {r.model for r in both} == {"student", "teacher"}
    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if line.startswith("| task"))
    assert header.startswith("| task | metric | student | teacher | Enformer")
    with open(pipeline.__file__.replace("pipeline/eval.py", "evaluation/published_baselines.csv")) as f:
        nt_h3 = next(r for r in csv.DictReader(f) if r["task"] == "H3" and r["model"] == "NT-v2-500M")
    assert f"{float(nt_h3['mean']):.3f} ± {float(nt_h3['spread_max_minus_min']):.3f}" in printed
    assert (tmp_path / "cmp" / "summary.md").read_text().count("| H3 |") == 1

    # --out one of the compared folders would overwrite that model's own summary: refused, folder untouched
    own = {name: (out / name).read_bytes() for name in ("summary.md", "summary.png")}
    for target in (out, f"{out}/", out / ".." / "eval_student"):
        with pytest.raises(HadError, match=f"--out {target} is one of the --compare folders"):
            pipeline.compare([str(tmp_path / "eval_teacher"), str(out)], str(target))
    assert {name: (out / name).read_bytes() for name in own} == own


def test_compare_keeps_two_models_with_the_same_label(tmp_path):
    from had.student import HadConfig
    from had.student.modeling_had import HadForPretraining

    data = _nt_task(tmp_path / "nt", "H3", seed=0)
    own = {}
    for seed, name in enumerate(("a", "b")):
        torch.manual_seed(seed)
        model = tmp_path / name / "full" / "model"  # both labelled "full"
        HadForPretraining(HadConfig(d_model=16, n_gdn_layers=1, n_heads=2, head_dim=8, mlp_hidden=32, attn_heads=2,
                                    teacher_dim=16, gdn_impl="naive")).save_pretrained(model)
        (summary,) = pipeline.run(_cfg(model, data, tmp_path / f"eval-{name}"))
        own[f"full (eval-{name})"] = summary.mean
    assert own["full (eval-a)"] != own["full (eval-b)"]
    for dirs in (["eval-a", "eval-b"], ["eval-b", "eval-a"]):
        both = pipeline.compare([str(tmp_path / d) for d in dirs], str(tmp_path / "cmp"))
        assert {r.model: r.mean for r in both} == own
        header = (tmp_path / "cmp" / "summary.md").read_text().split("| task | metric | ")[1].split("\n")[0]
        assert "full (eval-a)" in header and "full (eval-b)" in header


def test_eval_errors_are_clear(models, tmp_path):
    student, _ = models
    cfg = _cfg("", tmp_path, tmp_path / "o")
    with pytest.raises(HadError, match="eval.model is not set"):
        pipeline.run(cfg)
    for root in (tmp_path / "nowhere", ""):
        with pytest.raises(HadError, match="eval.data_root: benchmark folder not found"):
            pipeline.run(_cfg(student, root, tmp_path / "o"))
    with pytest.raises(HadError, match="--compare .*no results.parquet"):
        pipeline.compare([str(tmp_path)], str(tmp_path / "cmp"))
    with pytest.raises(HadError, match=r"override 'loss.lambda_distill': unknown section 'loss' \(sections: genome, "
                                       r"teacher, .*eval"):
        load_config("tiny", sets={"loss.lambda_distill": 5})
    (tmp_path / "afile").write_text("x")
    with pytest.raises(HadError, match="afile is an existing file"):
        pipeline.run(_cfg(student, tmp_path, tmp_path / "afile"))

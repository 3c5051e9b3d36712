"""`had experiment`: the whole science run at toy size, the verdict's arithmetic, and clear errors."""
import dataclasses
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from had.cli import app
from had.errors import HadError
from had.evaluation.results import append_results
from had.pipeline import experiment

TOY = {
    "n_contigs": 2, "contig_length": 8_000, "cache_contigs": 1, "tasks": ["promoter_tata"], "task_train": 40, "task_test": 20,
    "task_length": 100, "variants": ["had", "random_init"], "teacher.steps": 3, "teacher.hidden_size": 16,
    "teacher.num_layers": 1, "teacher.num_heads": 2, "teacher.batch_size": 4, "teacher.val_windows": 4,
}
TOY_RUN = {"train.steps": 2, "train.log_every": 1, "eval.seeds": 1, "eval.epochs": 1, "cache.workers": 1,
           "genome.window": 128, "student.max_position": 128}


def test_toy_experiment_writes_a_summary_with_every_model(tmp_path):
    exp, cfg = experiment.build("cpu", "synthetic", TOY_RUN, TOY)
    verdict = experiment.run(exp, cfg, tmp_path, seed=5)
    summary = (tmp_path / "summary.md").read_text()
    header = next(line for line in summary.splitlines() if line.startswith("| task |"))
    assert [c.strip() for c in header.strip("|").split("|")][2:] == ["had", "random_init", "teacher"]
    assert "| promoter_tata |" in summary and "## Verdict" in summary
    assert (tmp_path / "summary.png").stat().st_size > 0
    assert set(verdict.average) == {"had", "random_init", "teacher"}
    assert json.loads((tmp_path / "verdict.json").read_text())["average"] == pytest.approx(verdict.average)
    assert (tmp_path / "students" / "random_init" / "model" / "config.json").is_file()
    assert not (tmp_path / "students" / "random_init" / "metrics.jsonl").exists()  # never trained
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["genome"]["contigs"] == ["syn1"]  # the teacher read both contigs, the cache one

    # Again into the same folder: the teacher, the trained student and the eval runs are reused.
    again = experiment.run(exp, cfg, tmp_path, seed=5)
    assert again.average == verdict.average

    # Fewer (or more) models, without the teacher's eval: still the same experiment.
    assert set(experiment.run(dataclasses.replace(exp, variants=["had"], eval_teacher=False), cfg, tmp_path,
                              seed=5).average) == {"had"}

    # Other settings into the same folder are refused before anything is touched.
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    other, other_cfg = experiment.build("cpu", "synthetic", TOY_RUN | {"train.steps": 3}, TOY | {"teacher.steps": 4})
    with pytest.raises(HadError, match=r"experiment.teacher.steps 3 \(now 4\).*run.train.steps 2 \(now 3\)"):
        experiment.run(other, other_cfg, tmp_path, seed=5)
    with pytest.raises(HadError, match=r"seed 5 \(now 6\)"):
        experiment.run(exp, cfg, tmp_path, seed=6)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before


def _rows(model, task, lr, metric_by_seed, val):
    return [{"model": model, "benchmark": "nt", "nt_version": "revised", "task": task, "lr": lr, "seed": s,
             "metric": "mcc", "val_metric": val, "test_metric": m, "epochs": 1, "best_epoch": 1, "n_train": 1,
             "n_val": 1, "n_test": 1, "seconds": 0.0, "protocol": "{}"} for s, m in enumerate(metric_by_seed)]


def test_verdict_uses_the_validation_lr_and_averages_tasks(tmp_path):
    rng = np.random.default_rng(0)
    scores = {m: {t: rng.uniform(0, 1, 3) for t in ("a", "b")} for m in ("had", "recon_only", "random_init")}
    dirs = []
    for model, tasks in scores.items():
        d = tmp_path / model
        d.mkdir()
        for task, s in tasks.items():
            append_results(d / "results.parquet", _rows(model, task, 0.002, s, val=0.9))
            append_results(d / "results.parquet", _rows(model, task, 0.001, s + 5, val=0.1))  # lower val: ignored
        dirs.append(d)
    verdict = experiment.judge(dirs)
    for model, tasks in scores.items():
        assert verdict.average[model] == pytest.approx(np.mean([s.mean() for s in tasks.values()]))
        per_seed = np.mean([tasks["a"], tasks["b"]], axis=0)
        assert verdict.seed_means[model] == pytest.approx(per_seed)
    claim = next(c for c in verdict.claims if (c["better"], c["worse"]) == ("had", "recon_only"))
    diffs = [scores["had"][t].mean() - scores["recon_only"][t].mean() for t in ("a", "b")]
    assert claim["margin"] == pytest.approx(np.mean(diffs)) and claim["wins"] == sum(d > 0 for d in diffs)
    assert claim["holds"] == (np.mean(diffs) > 0)
    had_seeds, recon_seeds = (np.mean([scores[m]["a"], scores[m]["b"]], axis=0) for m in ("had", "recon_only"))
    assert claim["separated"] == (had_seeds.min() > recon_seeds.max())
    chain = all(c["holds"] for c in verdict.claims if c["chain"])
    assert ("HAD > recon-only > random init: HOLDS" in verdict.text()) == chain
    assert not any(math.isnan(v) for v in verdict.average.values())


def test_one_fine_tuning_seed_is_never_beyond_seed_spread(tmp_path):
    dirs = []
    for model, score in (("had", 0.9), ("recon_only", 0.5), ("random_init", 0.1)):
        (tmp_path / model).mkdir()
        append_results(tmp_path / model / "results.parquet", _rows(model, "a", 0.002, [score], val=0.5))
        dirs.append(tmp_path / model)
    verdict = experiment.judge(dirs)
    assert all(c["holds"] and not c["separated"] for c in verdict.claims)
    assert "beyond seed spread" not in verdict.text()
    assert "HOLDS (one fine-tuning seed: spread unknown)" in verdict.text()


@pytest.mark.parametrize("preset, data, ours, message", [
    ("laptop", "synthetic", {}, "--preset 'laptop'"),
    ("cpu", "mars", {}, "--data 'mars'"),
    ("cpu", "synthetic", {"variants": ["had", "hda"]}, "unknown ['hda']"),
    ("cpu", "synthetic", {"contigs": 3}, "experiment.contigs: unknown key"),
    ("cpu", "synthetic", {"teacher.layers": 3}, "experiment.teacher.layers: unknown key"),
    ("cpu", "synthetic", {"teacher.steps": "abc"}, "experiment.teacher.steps: expected an integer"),
    ("cpu", "synthetic", {"cache_contigs": 1.5}, "experiment.cache_contigs: expected an integer"),
])
def test_bad_options_are_clear_errors(preset, data, ours, message):
    with pytest.raises(HadError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        experiment.build(preset, data, {}, ours)


def test_cli_bad_preset_is_one_line():
    result = CliRunner().invoke(app, ["experiment", "--preset", "laptop"])
    assert result.exit_code == 1 and "--preset 'laptop'" in result.output and "Traceback" not in result.output

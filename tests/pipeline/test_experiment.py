"""`had experiment`: the whole science run at toy size, the gate, the paired verdict's arithmetic, clear errors."""
import dataclasses
import json

import pytest
from typer.testing import CliRunner

from had.cli import app
from had.data import synthetic
from had.errors import HadError
from had.evaluation.results import append_results
from had.pipeline import experiment
from had.teacher_pretrain import TeacherPretrainConfig, pretrain_teacher

TOY = {
    "n_contigs": 2, "contig_length": 8_000, "cache_contigs": 1, "tasks": ["promoter_tata"], "task_train": 40,
    "task_test": 20, "task_length": 100, "variants": ["had", "random_init"], "pretrain_seeds": 2, "finetune": True,
    "teacher.steps": 3, "teacher.hidden_size": 16, "teacher.num_layers": 1, "teacher.num_heads": 2,
    "teacher.batch_size": 4, "teacher.val_windows": 4,
}
TOY_RUN = {"train.steps": 2, "train.log_every": 1, "eval.seeds": 1, "eval.epochs": 1, "cache.workers": 1,
           "genome.window": 128, "student.max_position": 128}


def test_toy_experiment_writes_a_summary_with_every_model(tmp_path):
    exp, cfg = experiment.build("cpu", "synthetic", TOY_RUN, TOY)
    verdict = experiment.run(exp, cfg, tmp_path, seed=5)
    summary = (tmp_path / "summary.md").read_text()
    assert [a.protocol for a in verdict.arms] == ["probe", "finetune"]
    for arm in verdict.arms:
        assert set(arm.scores) == {"had", "random_init", "teacher", "teacher_init"}
        assert set(arm.scores["had"]) == {"0", "1"} and set(arm.scores["had"]["0"]) == {"promoter_tata"}
        (claim,) = arm.claims
        assert (claim["better"], claim["worse"], claim["seeds"]) == ("had", "random_init", [0, 1])
    # A 3-step teacher knows nothing: the gate fails and no claim is judged.
    assert not verdict.gate.passed and "## Teacher gate: FAILED" in summary
    assert verdict.gate.heldout == "contig syn2" and verdict.gate.teacher_probe is not None
    assert verdict.gate.teacher_init_probe is not None and "the teacher's own initialisation probes" in summary
    assert summary.count(experiment.UNINFORMATIVE) == 2 and "hold" not in summary.lower()
    assert "Wall time (s) of each invocation" in summary and ": genome and tasks" in summary and "students" in summary
    assert (tmp_path / "summary.png").stat().st_size > 0
    saved = json.loads((tmp_path / "verdict.json").read_text())
    assert saved["gate_passed"] is False
    assert saved["arms"][0]["claims"][0]["mean"] == pytest.approx(verdict.arms[0].claims[0]["mean"])
    for s in (0, 1):
        assert (tmp_path / "students" / "random_init" / f"seed{s}" / "model" / "config.json").is_file()
        assert (tmp_path / "students" / "had" / f"seed{s}" / "metrics.jsonl").is_file()
    assert not (tmp_path / "students" / "random_init" / "seed0" / "metrics.jsonl").exists()  # never trained
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["genome"]["contigs"] == ["syn1"]  # the teacher read syn1 (syn2 held out), the cache syn1

    # Again into the same folder: the teacher, the trained students and the eval runs are reused.
    again = experiment.run(exp, cfg, tmp_path, seed=5)
    assert dataclasses.asdict(again) == dataclasses.asdict(verdict)
    first, second = [json.loads(line)["timings_s"] for line in (tmp_path / experiment.TIMINGS).read_text().splitlines()]
    assert second["total"] < first["total"]  # the first invocation's times stay on record
    assert (tmp_path / "summary.md").read_text().count(": genome and tasks") == 2
    # ... also when its settings were recorded before the teacher's corruption settings existed (mask only)
    settings = json.loads((tmp_path / experiment.SETTINGS).read_text())
    for key in ("random_fraction", "keep_fraction"):
        del settings["experiment"]["teacher"][key]
    (tmp_path / experiment.SETTINGS).write_text(json.dumps(settings))
    assert dataclasses.asdict(experiment.run(exp, cfg, tmp_path, seed=5)) == dataclasses.asdict(verdict)

    # Fewer models, seeds or arms: still the same experiment.
    fewer = experiment.run(dataclasses.replace(exp, variants=["had"], pretrain_seeds=1, finetune=False), cfg,
                           tmp_path, seed=5)
    assert [a.protocol for a in fewer.arms] == ["probe"]
    assert set(fewer.arms[0].scores) == {"had", "teacher", "teacher_init"}

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
             "n_val": 1, "n_test": 1, "seconds": 0.0, "protocol": "{}", "probe_c": None}
            for s, m in enumerate(metric_by_seed)]


def _arm(tmp_path, protocol, table):
    """table: model -> pretraining seed -> task -> [test metric per eval seed]; written as eval folders.
    Fine-tuning rows get a second lr with a worse validation metric (and test metrics that must be ignored)."""
    dirs = {}
    for model, seeds in table.items():
        for seed, tasks in seeds.items():
            d = tmp_path / protocol / f"{model}-{seed}"
            d.mkdir(parents=True)
            for task, metrics in tasks.items():
                append_results(d / "results.parquet", _rows(model, task, None if protocol == "probe" else 0.002,
                                                            metrics, val=0.9))
                if protocol == "finetune":
                    append_results(d / "results.parquet", _rows(model, task, 0.001, [9.0] * len(metrics), val=0.1))
            dirs[(model, seed)] = d
    return dirs


# model -> pretraining seed -> task -> test metric per eval seed; "-": the teacher (no pretraining seed)
TABLE = {
    "had": {"0": {"a": [0.6, 0.8], "b": [0.4]}, "1": {"a": [0.7], "b": [0.5]}},
    "recon_only": {"0": {"a": [0.5], "b": [0.3]}, "1": {"a": [0.4], "b": [0.5]}},
    "random_init": {"0": {"a": [0.3], "b": [0.3]}, "1": {"a": [0.2], "b": [0.2]}},
    "teacher": {"-": {"a": [0.5], "b": [0.5]}},
    "teacher_init": {"-": {"a": [0.1], "b": [0.3]}},
}


def _report(tmp_path, lr):
    """A teacher pretrained at `lr` for a few steps on a toy genome (lr 0: it stays at its random init)."""
    synthetic.write_genome(tmp_path / "g.fa", seed=1, n_contigs=2, contig_length=12_000, repeat_fraction=0.5)
    cfg = TeacherPretrainConfig(hidden_size=16, num_layers=1, num_heads=2, window=120, batch_size=4, steps=2, lr=lr,
                                val_windows=32, heldout_contig=True)
    return pretrain_teacher(tmp_path / "g.fa", tmp_path / "teacher", cfg)


def test_a_teacher_that_knows_nothing_gives_uninformative_never_does_not_hold(tmp_path):
    report = _report(tmp_path, lr=0.0)  # random init
    assert report.val_loss > report.unigram_loss - experiment.GATE_HELDOUT and report.repeat_tokens > 0
    verdict = experiment.judge({"probe": _arm(tmp_path, "probe", TABLE)}, report)
    assert verdict.gate.teacher_probe > verdict.gate.random_probe  # the probe part alone would pass
    assert verdict.gate.checks() == {"heldout": False, "repeats": False, "probe": True} and not verdict.gate.passed
    text = verdict.text()
    assert "## Teacher gate: FAILED" in text and f"(probe): {experiment.UNINFORMATIVE}." in text
    assert all(c["verdict"] == experiment.UNINFORMATIVE for c in verdict.arms[0].claims)
    assert "not hold" not in text.lower() and "HOLDS" not in text


def test_paired_verdict_by_hand_when_the_gate_passes(tmp_path):
    report = _report(tmp_path, lr=0.0)
    knows = dataclasses.replace(report, val_loss=report.unigram_loss - 0.4,
                                repeat_loss=report.repeat_unigram_loss - 0.6)  # figures that clear the gate
    verdict = experiment.judge({"probe": _arm(tmp_path, "probe", TABLE),
                                "finetune": _arm(tmp_path, "finetune", TABLE)}, knows)
    assert verdict.gate.passed
    assert verdict.gate.teacher_probe == pytest.approx(0.5)
    assert verdict.gate.random_probe == pytest.approx((0.3 + 0.2) / 2)
    assert verdict.gate.teacher_init_probe == pytest.approx(0.2)  # reported beside the gate, not part of it
    assert "initialisation probes 0.200: pretraining added +0.300" in verdict.text()
    for arm in verdict.arms:  # the same table in both arms: the lr worse on validation is ignored
        assert arm.scores["had"]["0"] == pytest.approx({"a": 0.7, "b": 0.4})
        claims = {(c["better"], c["worse"]): c for c in arm.claims}
        assert set(claims) == {("had", "recon_only"), ("recon_only", "random_init"), ("had", "random_init")}
        # by hand, tasks averaged per seed: had 0.55, 0.6; recon-only 0.4, 0.45; random init 0.3, 0.2.
        # Two seeds: the interval's ends are the two differences (each seed alone is drawn with p 1/4).
        for pair, (d0, d1) in {("had", "recon_only"): (0.15, 0.15), ("recon_only", "random_init"): (0.1, 0.25),
                               ("had", "random_init"): (0.25, 0.4)}.items():
            c = claims[pair]
            assert c["diffs"] == pytest.approx([d0, d1]) and c["mean"] == pytest.approx((d0 + d1) / 2)
            assert (c["low"], c["high"]) == pytest.approx((min(d0, d1), max(d0, d1)))
            assert c["verdict"] == "holds"
        assert f"HAD > recon-only > random init ({arm.protocol}): HOLDS." in verdict.text()


def test_summary_plot_of_paired_differences(tmp_path):
    report = _report(tmp_path, lr=0.0)
    verdict = experiment.judge({"probe": _arm(tmp_path, "probe", TABLE)}, report)
    experiment.plot(verdict, tmp_path / "summary.png")
    assert (tmp_path / "summary.png").stat().st_size > 0


@pytest.mark.parametrize("preset, data, ours, message", [
    ("laptop", "synthetic", {}, "--preset 'laptop'"),
    ("cpu", "mars", {}, "--data 'mars'"),
    ("cpu", "synthetic", {"variants": ["had", "hda"]}, "unknown ['hda']"),
    ("cpu", "synthetic", {"contigs": 3}, "experiment.contigs: unknown key"),
    ("cpu", "synthetic", {"teacher.layers": 3}, "experiment.teacher.layers: unknown key"),
    ("cpu", "synthetic", {"teacher.steps": "abc"}, "experiment.teacher.steps: expected an integer"),
    ("cpu", "synthetic", {"cache_contigs": 1.5}, "experiment.cache_contigs: expected an integer"),
    ("cpu", "synthetic", {"pretrain_seeds": 0}, "experiment.pretrain_seeds=0: at least 1"),
])
def test_bad_options_are_clear_errors(preset, data, ours, message):
    with pytest.raises(HadError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        experiment.build(preset, data, {}, ours)


def test_cli_bad_preset_is_one_line():
    result = CliRunner().invoke(app, ["experiment", "--preset", "laptop"])
    assert result.exit_code == 1 and "--preset 'laptop'" in result.output and "Traceback" not in result.output

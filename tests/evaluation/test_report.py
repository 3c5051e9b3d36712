"""Reports: lr chosen on validation (never test), mean ± (max - min), published rows beside ours."""
import csv
import filecmp
import itertools
from pathlib import Path

import pytest

from had.evaluation import report


def _row(model, task, lr, seed, val, test, benchmark="nt", nt_version="original", metric="mcc"):
    return {"model": model, "benchmark": benchmark, "nt_version": nt_version, "task": task, "lr": lr, "seed": seed,
            "metric": metric, "val_metric": val, "test_metric": test}


def test_lr_is_chosen_on_validation_and_spread_is_max_minus_min():
    rows = [
        # lr 1e-3: better validation, worse test; lr 2e-3: worse validation, better test
        _row("m", "H3", 1e-3, 0, 0.80, 0.50), _row("m", "H3", 1e-3, 1, 0.70, 0.56), _row("m", "H3", 1e-3, 2, 0.75, 0.53),
        _row("m", "H3", 2e-3, 0, 0.60, 0.90), _row("m", "H3", 2e-3, 1, 0.65, 0.95), _row("m", "H3", 2e-3, 2, 0.62, 0.92),
    ]
    (s,) = report.summarize(rows)
    assert (s.lr, s.seeds, s.benchmark) == (1e-3, 3, "nt_original")
    assert s.mean == pytest.approx((0.50 + 0.56 + 0.53) / 3) and s.spread == pytest.approx(0.06)


def test_markdown_puts_published_rows_beside_ours_with_averages():
    rows = [_row(m, t, 1e-3, s, 0.5, v) for (m, t, s), v in zip(
        itertools.product(["runs/a", "runs/b"], ["H3", "promoter_all"], [0, 1]), [0.1 * i for i in range(8)])]
    summary = report.summarize(rows)
    text = report.markdown(summary)
    with open(report.PUBLISHED_CSV, newline="") as f:
        published = {(r["model"], r["task"]): float(r["mean"]) for r in csv.DictReader(f) if r["benchmark"] == "nt_original"}
    header = next(line for line in text.splitlines() if line.startswith("| task"))
    assert header.split(" | ")[2:4] == ["runs/a", "runs/b"] and "NT-v2-500M" in header and "Caduceus-Ph" in header
    h3 = next(line for line in text.splitlines() if line.startswith("| H3 "))
    assert f"{published[('NT-v2-500M', 'H3')]:.3f}" in h3 and "0.050 ± 0.100 @0.001" in h3
    average = next(line for line in text.splitlines() if line.startswith("| **average**"))
    ours_a = (0.05 + 0.25) / 2
    nt = (published[("NT-v2-500M", "H3")] + published[("NT-v2-500M", "promoter_all")]) / 2
    assert f"{ours_a:.3f}" in average and f"{nt:.3f}" in average


def test_model_labels(tmp_path):
    (tmp_path / "run1" / "model").mkdir(parents=True)
    assert report.model_label(str(tmp_path / "run1" / "model")) == "run1"
    assert report.model_label(str(tmp_path / "run1")) == "run1"
    assert report.model_label("InstaDeepAI/nt-v2") == "InstaDeepAI/nt-v2"


def test_models_sharing_a_label_keep_their_own_columns(tmp_path):
    """Two `.../full/model` (or one model before and after a retrain) never merge into one column."""
    for d in ("a", "b"):
        (tmp_path / d / "full" / "model").mkdir(parents=True)
    a, b = str(tmp_path / "a" / "full" / "model"), str(tmp_path / "b" / "full" / "model")

    def rows(model, fingerprint, source, test):
        return [{**_row(model, "H3", 1e-3, s, 0.5, test + 0.01 * s), "model_fingerprint": fingerprint,
                 "source": source} for s in (0, 1)]

    cases = [  # (rows of two models, the labels they must get)
        (rows(a, "f1", "ev/gue", 0.38) + rows(b, "f2", "ev/gue-other", 0.55), ["full (gue)", "full (gue-other)"]),
        (rows(a, "f1", "ev/gue", 0.38) + rows(a, "f2", "ev/gue-re", 0.05), ["full (gue)", "full (gue-re)"]),
        (rows(a, "f1", "x/gue", 0.38) + rows(b, "f2", "y/gue", 0.55), ["full (x/gue)", "full (y/gue)"]),
        (rows(a, "f1", None, 0.38) + rows(b, "f2", None, 0.55), [f"full ({a})", f"full ({b})"]),
    ]
    for both, names in cases:
        for ordered in (both, both[2:] + both[:2]):  # either order
            summary = report.summarize(ordered)
            got = {s.model: s.mean for s in summary}
            assert sorted(got) == names
            first, second = both[:2], both[2:]
            assert [got[n] for n in names] == pytest.approx(
                [sum(r["test_metric"] for r in part) / 2 for part in (first, second)])
            header = next(line for line in report.markdown(summary).splitlines() if line.startswith("| task"))
            assert all(f"| {n} |" in header for n in names)
    (s,) = report.summarize(rows(a, "f1", "ev/gue", 0.38))
    assert s.model == "full"  # a label nothing collides with stays short


def test_gb_average_shows_the_published_had_number(tmp_path):
    summary = report.summarize([_row("had", "human_enhancers_cohn", 1e-3, 0, 0.7, 0.7, "gb", None, "accuracy")])
    text = report.markdown(summary)
    assert "## genomic_benchmarks" in text and "0.875 (published, all tasks)" in text
    report.write_report(summary, tmp_path)
    assert (tmp_path / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_published_rows_beside_tasks_that_were_never_published():
    summary = report.summarize([_row("had", "synthetic_enhancers", 1e-3, 0, 0.7, 0.7, "gb", None, "accuracy")])
    text = report.markdown(summary)
    assert "| task | metric | had |" in text and "0.875" not in text and "CNN" not in text


def test_shipped_published_csv_is_the_reference_copy():
    reference = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "published_baselines.csv"
    if not reference.is_file():
        pytest.skip(f"{reference} absent (the shared reference data is not mounted)")
    assert filecmp.cmp(report.PUBLISHED_CSV, reference, shallow=False)


def test_shipped_extra_published_csv_is_the_reference_copy():
    reference = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "published_baselines_extra.csv"
    if not reference.exists():
        pytest.skip(f"{reference} absent (the shared reference data is not mounted)")
    assert filecmp.cmp(report.PUBLISHED_EXTRA_CSV, reference, shallow=False)


def test_gue_and_janusdna_published_rows_beside_ours_with_their_protocols():
    """DNABERT-2's GUE table and JanusDNA's NT numbers (published_baselines_extra.csv), each column's
    source named under its table."""
    rows = [{**_row("runs/a", task, 1e-3, s, 0.5, 0.4 + 0.1 * s), "benchmark": "gue", "nt_version": None}
            for task in ("prom/prom_core_tata", "tf/0") for s in (0, 1)]
    rows += [_row("runs/a", task, 1e-3, s, 0.5, 0.6) for task in ("H3", "enhancers") for s in (0, 1)]
    text = report.markdown(report.summarize(rows))
    with open(report.PUBLISHED_EXTRA_CSV, newline="") as f:
        extra = {(r["benchmark"], r["model"], r["task"]): r for r in csv.DictReader(f)}
    gue = text.split("## gue")[1].split("## ")[0]
    tata = next(line for line in gue.splitlines() if line.startswith("| prom/prom_core_tata "))
    assert f"{float(extra[('gue', 'DNABERT-2', 'prom/prom_core_tata')]['mean']):.3f}" in tata
    assert "DNABERT (6-mer)" in gue and "NT-500M-human" in gue and "DNABERT-2 (Zhou et al. 2024) Table 4" in gue
    nt = text.split("## nt_original")[1]
    h3 = next(line for line in nt.splitlines() if line.startswith("| H3 "))
    assert f"{float(extra[('nt_original', 'JanusDNA_mlp +midattn', 'H3')]['mean']):.3f}" in h3
    assert "JanusDNA README (Qihao-Duan/JanusDNA@abef66f7), mean over 10 split seeds" in nt
    assert "Caduceus (Schiff et al. 2024) Table 2" in nt and ", std 0." not in nt
    janus = [float(r["mean"]) for k, r in extra.items() if k[1] == "JanusDNA_mlp +midattn"]
    assert len(janus) == 18 and round(sum(janus) / 18, 3) == 0.773  # the figure, from the copy

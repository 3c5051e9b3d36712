"""Summaries of sweeps in the papers' form, beside the published numbers.

Per (model, benchmark, task): the lr with the best mean *validation* metric over seeds is
chosen (never the test metric; ties go to the smaller lr), and the test metric at that lr is
reported as mean ± (max - min) over its seeds, as in Caduceus Tables 1-2. Published rows
come from `published_baselines.csv` and `published_baselines_extra.csv` (transcribed from the papers:
Caduceus Tables 1-2 and HAD; DNABERT-2's GUE table with DNABERT and NT;
JanusDNA's NT-task numbers); each table names the source, hence the protocol, of its published
columns, which differ (10-fold CV with max - min, 10 split seeds with std, one GUE split).

    summary = summarize(read_results("runs/eval/results.parquet"))
    write_report(summary, "runs/eval")      # summary.md + summary.png
"""
from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PUBLISHED_CSV = Path(__file__).with_name("published_baselines.csv")
PUBLISHED_EXTRA_CSV = Path(__file__).with_name("published_baselines_extra.csv")
# How our (benchmark, nt_version) are named in the published table.
_PUBLISHED_NAME = {("nt", "original"): "nt_original", ("gb", None): "genomic_benchmarks"}
_AVERAGE_TASK = "AVERAGE_8_TASKS"  # a published benchmark average (HAD's GB number)


@dataclass
class SummaryRow:
    """One cell of a summary table: a model's score on a task (ours or published)."""

    model: str  # display name
    benchmark: str  # nt_original | nt_revised | genomic_benchmarks | gue
    task: str
    metric: str
    mean: float
    spread: float | None  # max - min over seeds (None when not published)
    seeds: int | None
    lr: float | None = None  # the lr chosen on validation (ours only)
    published: bool = False
    source: str | None = None  # where a published number comes from (paper, table, protocol)


def summarize(rows: list[dict]) -> list[SummaryRow]:
    """Our rows (`results.parquet` dicts) -> one SummaryRow per (model, benchmark, task).

    A model is its (eval folder, path, fingerprint): rows may carry the folder they were read from
    as "source" (`had eval --compare`). Each model gets its own display name (`labels`).
    """
    runs: dict[tuple, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        model = (r.get("source") or "", r["model"], r.get("model_fingerprint") or "")
        runs[(model, benchmark_name(r["benchmark"], r["nt_version"]), r["task"])][r["lr"]].append(r)
    names = labels(list(dict.fromkeys(model for model, _, _ in runs)))
    out = []
    for (model, benchmark, task), by_lr in sorted(runs.items()):
        lr = max(sorted(by_lr), key=lambda x: np.mean([r["val_metric"] for r in by_lr[x]]))
        test = np.array([r["test_metric"] for r in by_lr[lr]])
        out.append(SummaryRow(names[model], benchmark, task, by_lr[lr][0]["metric"], float(test.mean()),
                              float(test.max() - test.min()), len(test), lr))
    return out


def labels(models: list[tuple[str, str, str]]) -> dict[tuple, str]:
    """Distinct display names for (eval folder, model path, fingerprint) triples: `model_label`, and
    where two share it (two `.../full/model`), that name plus the first of the eval folder's name, the
    folder, the model path or the fingerprint that tells them apart (all three, if none alone does)."""
    names = {m: model_label(m[1]) for m in models}
    tags = (lambda m: Path(m[0]).name, lambda m: m[0], lambda m: m[1], lambda m: m[2][:12],
            lambda m: f"{m[0]}, {m[1]}, {m[2][:12]}")
    for name in set(names.values()):
        clash = [m for m in models if names[m] == name]
        if len(clash) == 1:
            continue
        tag = next(t for t in tags if len({t(m) for m in clash}) == len(clash) and all(t(m) for m in clash))
        names.update({m: f"{name} ({tag(m)})" for m in clash})
    return names


def published(benchmarks: set[str], paths: tuple[Path, ...] = (PUBLISHED_CSV, PUBLISHED_EXTRA_CSV)) -> list[SummaryRow]:
    """Published rows of the given benchmarks (names as in `benchmark_name`)."""
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            rows += [
                SummaryRow(r["model"], r["benchmark"], r["task"], r["metric"], float(r["mean"]),
                           float(r["spread_max_minus_min"]) if r["spread_max_minus_min"] else None,
                           int(r["seeds"]) if r["seeds"] else None, published=True, source=r["source"])
                for r in csv.DictReader(f) if r["benchmark"] in benchmarks
            ]
    return rows


def beside(ours: list[SummaryRow]) -> list[SummaryRow]:
    """Published rows of the benchmarks where at least one of our tasks is a published task
    (e.g. no GB average beside synthetic tasks written in the GB layout)."""
    rows = published({r.benchmark for r in ours})
    shared = {(r.benchmark, r.task) for r in rows} & {(r.benchmark, r.task) for r in ours}
    return [r for r in rows if r.benchmark in {b for b, _ in shared}]


def benchmark_name(benchmark: str, nt_version: str | None) -> str:
    return _PUBLISHED_NAME.get((benchmark, nt_version), benchmark if benchmark != "nt" else f"nt_{nt_version}")


def model_label(model: str) -> str:
    """Short display name: a hub id as is; a directory by its name (its parent's for `.../model`)."""
    path = Path(model)
    if not path.exists():
        return model
    path = path.resolve()
    return path.parent.name if path.name == "model" else path.name


def markdown(summary: list[SummaryRow]) -> str:
    """One table per benchmark: tasks x (our models, then published models), plus averages."""
    ours = [r for r in summary if not r.published]
    rows = ours + beside(ours)
    parts = []
    for benchmark in sorted({r.benchmark for r in ours}):
        cells = {(r.model, r.task): r for r in rows if r.benchmark == benchmark}
        models = _unique(r.model for r in ours if r.benchmark == benchmark)
        models += _unique(r.model for r in rows if r.benchmark == benchmark and r.published and r.model not in models)
        tasks = _unique(r.task for r in ours if r.benchmark == benchmark)
        metric = {r.task: r.metric for r in ours if r.benchmark == benchmark}
        lines = [f"## {benchmark}", "", "| task | metric | " + " | ".join(models) + " |",
                 "|---|---|" + "---|" * len(models)]
        for task in tasks:
            lines.append(f"| {task} | {metric[task]} | " + " | ".join(_cell(cells.get((m, task))) for m in models) + " |")
        averages = []
        for m in models:
            values = [cells[(m, t)].mean for t in tasks if (m, t) in cells]
            if (m, _AVERAGE_TASK) in cells:
                averages.append(f"{cells[(m, _AVERAGE_TASK)].mean:.3f} (published, all tasks)")
            elif values:
                note = "" if len(values) == len(tasks) else f" ({len(values)}/{len(tasks)} tasks)"
                averages.append(f"{np.mean(values):.3f}{note}")
            else:
                averages.append("")
        lines.append("| **average** | | " + " | ".join(averages) + " |")
        lines += _sources([r for r in rows if r.benchmark == benchmark and r.published])
        parts.append("\n".join(lines))
    header = ("# had eval summary\n\nTest metric, mean ± (max - min) over seeds; fine-tuning at the learning "
              "rate with the best mean validation metric (shown after @), linear probe (no @) with its "
              "regularisation chosen on validation in every run. Published numbers: their papers, "
              "under their own protocols (named below each table; a published spread is max - min "
              "only where the source gives it).\n\n")
    return header + "\n\n".join(parts) + "\n"


def plot(summary: list[SummaryRow], path: str | Path) -> None:
    """Bar chart per benchmark: one group per task, one bar per model (ours, then published)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = [r for r in summary if not r.published]
    benchmarks = sorted({r.benchmark for r in ours})
    rows = ours + [r for r in beside(ours) if r.task != _AVERAGE_TASK]
    fig, axes = plt.subplots(len(benchmarks), 1, figsize=(12, 4 * len(benchmarks)), squeeze=False)
    for ax, benchmark in zip(axes[:, 0], benchmarks):
        tasks = _unique(r.task for r in ours if r.benchmark == benchmark)
        cells = {(r.model, r.task): r for r in rows if r.benchmark == benchmark and r.task in tasks}
        models = _unique(r.model for r in ours if r.benchmark == benchmark)
        n_ours = len(models)
        models += _unique(m for m, _ in cells if m not in models)
        width = 0.8 / len(models)
        for i, m in enumerate(models):
            have = [(j, cells[(m, t)]) for j, t in enumerate(tasks) if (m, t) in cells]
            ax.bar([j + i * width for j, _ in have], [c.mean for _, c in have], width,
                   yerr=[(c.spread or 0) / 2 for _, c in have], label=m, hatch="" if i < n_ours else "//")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks, rotation=30, ha="right")
        ax.set_title(benchmark)
        ax.set_ylabel("test metric (bar: mean; line: ± (max - min) / 2)")
        ax.legend(fontsize="small", ncol=min(4, len(models)))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(summary: list[SummaryRow], out: str | Path) -> Path:
    """Write `<out>/summary.md` and `<out>/summary.png`; returns the .md path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(markdown(summary))
    plot(summary, out / "summary.png")
    return out / "summary.md"


def _sources(rows: list[SummaryRow]) -> list[str]:
    """Lines naming where the published columns come from (paper, table, protocol), one per source;
    a per-task std quoted in a source (JanusDNA) is left out of the line (it stays in the CSV)."""
    models: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        source = re.sub(r", std [0-9.]+", "", r.source or "unknown")
        if r.model not in models[source]:
            models[source].append(r.model)
    return ["", "Published columns:"] + [f"- {', '.join(m)}: {s}" for s, m in models.items()] if models else []


def _cell(row: SummaryRow | None) -> str:
    if row is None:
        return ""
    text = f"{row.mean:.3f}" + (f" ± {row.spread:.3f}" if row.spread is not None else "")
    return text + (f" @{row.lr:g}" if row.lr is not None else "")


def _unique(items) -> list:
    return list(dict.fromkeys(items))

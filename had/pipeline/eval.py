"""`had eval`: fine-tune a model on a DNA benchmark, resumably, and report it beside published ones.

    had eval --model runs/had/model --benchmark nt --nt-version revised --data-root data/nt --out runs/eval-nt
    had eval --model InstaDeepAI/nucleotide-transformer-v2-500m-multi-species --trust-remote-code \\
        --benchmark gb --data-root ~/.genomic_benchmarks --out runs/eval-ntv2-gb --workers 8
    had eval --compare runs/eval-nt --compare runs/eval-ntv2-nt --out runs/compare

Writes `<out>/results.parquet` (one row per run, appended as runs finish), `<out>/summary.md`
and `<out>/summary.png`, and `<out>/config.yaml` (the resolved config). Re-running the same
command skips finished runs. Protocol: `had.evaluation.finetune`; metrics:
`had.evaluation.metrics`; lr selection and table form: `had.evaluation.report`.
"""
from __future__ import annotations

from pathlib import Path

from had.config import RunConfig
from had.errors import HadError
from had.evaluation.report import SummaryRow, markdown, summarize, write_report
from had.evaluation.results import read_results
from had.evaluation.sweep import run_sweep

RESULTS = "results.parquet"


def run(cfg: RunConfig) -> list[SummaryRow]:
    """Run (or finish) the sweep of cfg.eval and write the report; returns this model's summary."""
    out = _out_dir(cfg.eval.out)
    cfg.save(out / "config.yaml")
    rows = run_sweep(cfg.eval, out / RESULTS)
    summary = summarize(rows)
    report = write_report(summary, out)
    print(markdown(summary))
    print(f"results: {out / RESULTS}\nsummary: {report} and {out / 'summary.png'}")
    return summary


def compare(dirs: list[str], out: str) -> list[SummaryRow]:
    """Put the results of several `had eval` output folders in one table (written to `out`)."""
    clash = [d for d in dirs if Path(d).resolve() == Path(out).resolve()]
    if clash:
        raise HadError(f"--out {out} is one of the --compare folders ({clash[0]}): the comparison would overwrite "
                       "its own summary; choose another --out")
    rows = []
    for d in dirs:
        path = Path(d) / RESULTS
        if not path.is_file():
            raise HadError(f"--compare {d}: no {RESULTS} there (is it a `had eval` output folder?)")
        rows += [{**r, "source": d} for r in read_results(path)]  # two folders may hold two `.../full/model`
    summary = summarize(rows)
    report = write_report(summary, _out_dir(out))
    print(markdown(summary))
    print(f"summary: {report} and {Path(out) / 'summary.png'}")
    return summary


def _out_dir(out: str) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise HadError(f"eval.out (--out) {out} is an existing file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HadError(f"eval.out (--out) {out}: cannot create it ({e.strerror})") from None
    return path

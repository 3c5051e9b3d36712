"""`had demo`: the whole pipeline on built-in data, on a CPU, in minutes.

    had demo --out demo_out            # what `make demo` runs

1. generate a synthetic genome (planted promoter / enhancer / splice grammar) and downstream
   tasks from the same grammar, in the real NT (parquet + fna) and Genomic Benchmarks layouts;
2. build a tiny ESM teacher with the real NTv2 tokenizer files and save it with save_pretrained;
3. `cache-teacher` → `train` → `eval` (student and teacher) through the same `run(cfg)` functions
   the real commands call, then print the side-by-side table.

Nothing is downloaded; everything is determined by the seed.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

from had.config import RunConfig

# Sized for the 2-core CI machine: the whole demo runs in a few minutes.
GENOME = dict(n_contigs=2, contig_length=120_000)
NT_TASKS = ["promoter_tata", "enhancers"]
GB_TASKS = ["regulatory_types"]
TASK_SIZE = dict(n_train=320, n_test=160, length=160)


def run(cfg: RunConfig, out: Path, seed: int = 0) -> list:
    from had.data import synthetic
    from had.pipeline import cache_teacher, eval as evaluate, train
    from had.teacher import build_tiny_teacher

    out = Path(out)
    start = time.perf_counter()
    artifacts: dict[str, Path] = {}

    _step("1/5 synthetic genome and tasks")
    artifacts["genome"] = out / "data" / "genome.fa"
    synthetic.write_genome(artifacts["genome"], seed=seed, **GENOME)
    artifacts["nt tasks"] = out / "data" / "nt"
    artifacts["gb tasks"] = out / "data" / "gb"
    synthetic.write_tasks(artifacts["nt tasks"], "nt", seed=seed, tasks=NT_TASKS, **TASK_SIZE)
    synthetic.write_tasks(artifacts["gb tasks"], "gb", seed=seed, tasks=GB_TASKS, **TASK_SIZE)

    _step("2/5 tiny teacher (ESM, real NTv2 tokenizer)")
    artifacts["teacher"] = build_tiny_teacher(out / "teacher", seed=seed)

    cfg = copy.deepcopy(cfg)
    cfg.genome.fasta = str(artifacts["genome"])
    cfg.teacher.model = str(artifacts["teacher"])
    cfg.cache.path = str(out / "cache")
    cfg.train.out = str(out / "student")

    _step("3/5 had cache-teacher")
    cache_teacher.run(cfg)
    artifacts["cache"] = Path(cfg.cache.path)

    _step("4/5 had train")
    artifacts["student"] = Path(train.run(cfg))

    _step("5/5 had eval (student and teacher)")
    eval_dirs = []
    for name, model in (("student", artifacts["student"]), ("teacher", artifacts["teacher"])):
        for benchmark, root in (("nt", artifacts["nt tasks"]), ("gb", artifacts["gb tasks"])):
            ecfg = copy.deepcopy(cfg)
            ecfg.eval.model = str(model)
            ecfg.eval.benchmark = benchmark
            ecfg.eval.data_root = str(root)
            ecfg.eval.out = str(out / "eval" / f"{name}-{benchmark}")
            evaluate.run(ecfg)
            eval_dirs.append(ecfg.eval.out)

    _step("summary: student vs teacher")
    artifacts["comparison"] = out / "eval" / "compare"
    summary = evaluate.compare(eval_dirs, str(artifacts["comparison"]))

    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; artifacts:")
    for name, path in artifacts.items():
        print(f"  {name:<11} {path}")
    return summary


def _step(title: str) -> None:
    print(f"\n== {title} ==", flush=True)

"""`had demo`: the whole pipeline on built-in data, on a CPU, in minutes.

    had demo --out demo_out            # what `make demo` runs

1. generate a synthetic genome (planted promoter / enhancer / splice grammar) and downstream
   tasks from the same grammar, in the real NT (parquet + fna) and Genomic Benchmarks layouts;
2. build a tiny ESM teacher with the real NTv2 tokenizer files and save it with save_pretrained;
3. `cache-teacher` → `train` → `eval` (student and teacher) through the same `run(cfg)` functions
   the real commands call, then print the side-by-side table;
4. the linear probe (`had eval --protocol probe`) of the student at its random initialisation, the
   trained student and the teacher, side by side.

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
    from had.cache_store import CacheReader
    from had.data import synthetic
    from had.pipeline import cache_teacher, eval as evaluate, train
    from had.teacher import build_tiny_teacher

    out = Path(out)
    start = time.perf_counter()
    artifacts: dict[str, Path] = {}

    _step("1/6 synthetic genome and tasks")
    artifacts["genome"] = out / "data" / "genome.fa"
    synthetic.write_genome(artifacts["genome"], seed=seed, **GENOME)
    artifacts["nt tasks"] = out / "data" / "nt"
    artifacts["gb tasks"] = out / "data" / "gb"
    synthetic.write_tasks(artifacts["nt tasks"], "nt", seed=seed, tasks=NT_TASKS, **TASK_SIZE)
    synthetic.write_tasks(artifacts["gb tasks"], "gb", seed=seed, tasks=GB_TASKS, **TASK_SIZE)

    _step("2/6 tiny teacher (ESM, real NTv2 tokenizer)")
    artifacts["teacher"] = build_tiny_teacher(out / "teacher", seed=seed)

    cfg = copy.deepcopy(cfg)
    cfg.genome.fasta = str(artifacts["genome"])
    cfg.teacher.model = str(artifacts["teacher"])
    cfg.cache.path = str(out / "cache")
    cfg.train.out = str(out / "student")

    _step("3/6 had cache-teacher")
    cache_teacher.run(cfg)
    artifacts["cache"] = Path(cfg.cache.path)

    _step("4/6 had train")
    artifacts["student"] = Path(train.run(cfg))

    _step("5/6 had eval (student and teacher)")
    models = {"student": artifacts["student"], "teacher": artifacts["teacher"]}
    artifacts["comparison"] = out / "eval" / "compare"
    summary = evaluate.compare(_eval_all(cfg, models, artifacts, out / "eval", "finetune"),
                               str(artifacts["comparison"]))

    _step("6/6 had eval --protocol probe (random init, student, teacher)")
    artifacts["random init"] = out / "random_init" / "model"
    model_cfg = train.student_config(cfg, CacheReader(cfg.cache.path).manifest)
    train.init_student(model_cfg, cfg.train.seed).save_pretrained(artifacts["random init"])
    models = {"random_init": artifacts["random init"]} | models
    artifacts["probe"] = out / "probe" / "compare"
    evaluate.compare(_eval_all(cfg, models, artifacts, out / "probe", "probe"), str(artifacts["probe"]))

    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; artifacts:")
    for name, path in artifacts.items():
        print(f"  {name:<11} {path}")
    return summary


def _eval_all(cfg: RunConfig, models: dict[str, Path], artifacts: dict[str, Path], out: Path,
              protocol: str) -> list[str]:
    """`had eval` of every model on the NT and GB tasks with one protocol; returns the result folders."""
    from had.pipeline import eval as evaluate

    dirs = []
    for name, model in models.items():
        for benchmark in ("nt", "gb"):
            ecfg = copy.deepcopy(cfg)
            ecfg.eval.model, ecfg.eval.benchmark, ecfg.eval.protocol = str(model), benchmark, protocol
            ecfg.eval.data_root = str(artifacts[f"{benchmark} tasks"])
            ecfg.eval.out = str(out / f"{name}-{benchmark}")
            evaluate.run(ecfg)
            dirs.append(ecfg.eval.out)
    return dirs


def _step(title: str) -> None:
    print(f"\n== {title} ==", flush=True)

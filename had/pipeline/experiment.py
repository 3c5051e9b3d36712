"""`had experiment`: does the distillation work? A controlled reproduction, end to end.

    had experiment --preset cpu --data synthetic --seed 0 --out runs/science-syn0     # 2 CPU cores
    had experiment --preset cpu --data real --data-root ../shared/data/real --out runs/science-real  # chr20 + GUE
    had experiment --preset gpu --data synthetic --seed 1 --out runs/science-gpu       # one GPU

1. genome: a synthetic one from the generator seed (`had.data.synthetic`, with its classification
   tasks in the NT layout), or a real one from `--data-root` (genome/<one FASTA> + GUE tasks);
2. teacher: a small NT-style 6-mer ESM pretrained on that genome (`had.teacher_pretrain`);
3. `cache-teacher`, then students trained with the same budget (steps, batch, windows, size):
   HAD (distillation + reconstruction), recon-only (no distillation), distill-only, no attention
   layer, MLM-only (no teacher), and random init (no pretraining at all);
4. `had eval` of every student and of the teacher (fine-tuning seeds from `eval.seeds`);
5. `summary.md` + `summary.png` (the `had eval --compare` table over every model) and a verdict:
   does HAD > recon-only > random init hold, by how much, over how many tasks.

The RunConfig every student shares comes from `had/configs/science-<preset>.yaml` (`--set` overrides
it); the rest (genome size, tasks, teacher size, variants) is the `Experiment` preset below
(`--set experiment.<key>=<value>` overrides it). Re-running into the same --out resumes: the teacher,
the cache and trained students are reused and finished fine-tuning runs skipped. Only the models
(`experiment.variants`, `experiment.eval_teacher`) may change then: other settings are refused
before anything is written (`experiment.json` in --out records them).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from had.config import RunConfig, changes, coerce, load_config
from had.data import synthetic
from had.errors import HadError
from had.teacher_pretrain import TeacherPretrainConfig

FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fa.gz", ".fasta.gz", ".fna.gz")

# Student switches of every variant (None: not pretrained, saved at its random initialisation).
VARIANTS: dict[str, dict | None] = {
    "had": {},
    "recon_only": {"use_distill": False},
    "distill_only": {"use_recon": False},
    "no_attention": {"use_attention": False},
    "mlm_only": {"mlm_only": True},
    "random_init": None,
}
TEACHER = "teacher"
SETTINGS = "experiment.json"  # the settings a re-run into the same --out must repeat


@dataclass
class Experiment:
    """What the experiment runs beyond the shared RunConfig."""

    preset: str = "cpu"  # science-<preset>.yaml holds the students' RunConfig
    data: str = "synthetic"  # synthetic | real
    # Synthetic genome size. The teacher reads all of it: on 0.4 Mb its MLM memorised the
    # training windows (train loss under the 6-mer marginal, held-out loss above it); on 8 Mb
    # it uses the context on held-out windows (RESULTS.md, Science). The students see less.
    n_contigs: int = 8
    contig_length: int = 1_000_000
    cache_contigs: int | None = 1  # cache-teacher (so the students) reads the first N contigs; None = all
    # Local motifs (promoter_tata, splice_sites_donors), a local motif pair with spacing and
    # orientation rules (enhancers), and a long-range orientation XOR (enhancers_long_range).
    tasks: list[str] = field(default_factory=lambda: [
        "promoter_tata", "splice_sites_donors", "enhancers", "enhancers_long_range"])
    task_train: int = 800  # synthetic examples per task split (fewer: no model learns any task)
    task_test: int = 300
    task_length: int = 100
    real_tasks: list[str] = field(default_factory=lambda: ["prom/prom_core_tata", "tf/0", "mouse/0"])
    real_max_train: int | None = 800  # eval.max_train_samples for the GUE tasks (None = all)
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    eval_teacher: bool = True
    teacher: TeacherPretrainConfig = field(default_factory=lambda: TeacherPretrainConfig(
        hidden_size=128, num_layers=4, num_heads=4, window=258, batch_size=64, steps=1500, lr=1e-3))


PRESETS: dict[str, Experiment] = {
    "cpu": Experiment(),
    # Unmeasured: sized so that one H100 runs it in about an hour.
    "gpu": Experiment(
        preset="gpu", n_contigs=32, contig_length=2_000_000, cache_contigs=4, task_train=2000, task_test=1000,
        task_length=400,
        tasks=list(Experiment().tasks) + ["splice_sites_acceptors", "regulatory_types"],
        real_tasks=["prom/prom_core_tata", "prom/prom_300_tata", "tf/0", "mouse/0"], real_max_train=None,
        teacher=TeacherPretrainConfig(hidden_size=384, num_layers=8, num_heads=8, window=1020, batch_size=64,
                                      steps=8000, lr=1e-3, device="cuda")),
}


@dataclass
class Verdict:
    """Mean test metric over tasks per model, and the pairwise claims.

    A claim "A > B" holds when A's mean over tasks is higher; it is *separated* when even A's
    worst fine-tuning seed (its mean over tasks) beats B's best one: a margin beyond seed noise
    (never with fewer than two seeds each, where the spread is unknown).
    """

    task_means: dict[str, dict[str, float]]  # model -> task -> mean over fine-tuning seeds
    average: dict[str, float]  # model -> mean over tasks
    seed_means: dict[str, list[float]]  # model -> per fine-tuning seed, the mean over tasks
    claims: list[dict]  # {better, worse, margin (mean over tasks), wins, tasks, holds, separated, seeds, chain}

    def text(self) -> str:
        lines = ["## Verdict", "", "| model | mean over tasks | spread over fine-tuning seeds |", "|---|---|---|"]
        for model in sorted(self.average, key=self.average.get, reverse=True):
            lines.append(f"| {model} | {self.average[model]:.3f} | {np.ptp(self.seed_means[model]):.3f} |")
        lines.append("")
        for c in self.claims:
            lines.append(f"- {c['better']} > {c['worse']}: {_holds(c)} (margin {c['margin']:+.3f} mean over "
                         f"tasks; better on {c['wins']}/{c['tasks']} tasks)")
        chain = [c for c in self.claims if c["chain"]]
        if len(chain) == 2:
            ok = all(c["holds"] for c in chain)
            clear = all(c["separated"] for c in chain)
            spread = ("" if not ok else " (one fine-tuning seed: spread unknown)" if min(c["seeds"] for c in chain) < 2
                      else " (beyond seed spread)" if clear else " (within seed spread)")
            lines.append(f"\nHAD > recon-only > random init: {'HOLDS' if ok else 'does NOT hold'}{spread}.")
        return "\n".join(lines) + "\n"


def _holds(claim: dict) -> str:
    if not claim["holds"]:
        return "does NOT hold"
    if claim["seeds"] < 2:
        return "holds (one fine-tuning seed: spread unknown)"
    return "holds, beyond seed spread" if claim["separated"] else "holds, within seed spread"


def parse_overrides(sets: dict[str, object]) -> tuple[dict, dict]:
    """Split `--set` overrides into experiment.* keys (with the `experiment.` prefix dropped) and the rest."""
    ours = {k.split(".", 1)[1]: v for k, v in sets.items() if k.startswith("experiment.")}
    return ours, {k: v for k, v in sets.items() if not k.startswith("experiment.")}


def build(preset: str, data: str, overrides: dict | None = None, experiment_overrides: dict | None = None
          ) -> tuple[Experiment, RunConfig]:
    """The experiment preset and the students' RunConfig, with overrides applied and checked."""
    if preset not in PRESETS:
        raise HadError(f"--preset {preset!r}: expected one of {', '.join(PRESETS)}")
    if data not in ("synthetic", "real"):
        raise HadError(f"--data {data!r}: expected synthetic or real")
    exp = dataclasses.replace(copy.deepcopy(PRESETS[preset]), data=data)
    for key, value in (experiment_overrides or {}).items():
        head, _, sub = key.partition(".")
        target = exp.teacher if head == "teacher" and sub else exp
        name = sub if target is exp.teacher else key
        hints = typing.get_type_hints(type(target))
        if name not in hints:
            known = ", ".join(f.name for f in dataclasses.fields(Experiment))
            raise HadError(f"--set experiment.{key}: unknown key (experiment keys: {known}; "
                           f"teacher.<key> for the teacher's pretraining)")
        setattr(target, name, coerce(value, hints[name], f"experiment.{key}"))
    unknown = [v for v in exp.variants if v not in VARIANTS]
    if unknown:
        raise HadError(f"experiment.variants: unknown {unknown} (known: {', '.join(VARIANTS)})")
    return exp, load_config(f"science-{exp.preset}", sets=overrides)  # `sets`: `--set key=null` unsets too


def run(exp: Experiment, cfg: RunConfig, out: str | Path, seed: int = 0, data_root: str | Path | None = None
        ) -> Verdict:
    """The whole experiment into `out`; returns (and writes into summary.md) the verdict.

    data_root: with exp.data == "real", a folder holding genome/<one FASTA> and GUE/ (required then).
    """
    from had.pipeline import cache_teacher
    from had.pipeline import eval as evaluate
    from had.teacher_pretrain import pretrain_teacher

    out = Path(out)
    start = time.perf_counter()
    real = real_data(data_root) if exp.data == "real" else None  # checked before anything is written
    _check_settings(out, exp, cfg, seed)
    cfg = copy.deepcopy(cfg)
    _step("1/5 genome and tasks")
    cfg.genome.fasta, cfg.eval.data_root, cfg.eval.benchmark, cfg.eval.tasks = _data(exp, out / "data", seed, real)
    if exp.data == "real":
        cfg.eval.max_train_samples = exp.real_max_train
    elif exp.cache_contigs is not None and not cfg.genome.contigs:
        cfg.genome.contigs = [synthetic.contig_name(i) for i in range(min(exp.cache_contigs, exp.n_contigs))]

    _step("2/5 teacher pretraining (6-mer ESM masked LM)")
    teacher_dir = out / TEACHER
    report = pretrain_teacher(cfg.genome.fasta, teacher_dir, dataclasses.replace(exp.teacher, seed=seed))

    _step("3/5 had cache-teacher")
    cfg.teacher.model = str(teacher_dir)
    cfg.cache.path = str(out / "cache")
    cfg.cache.overwrite = True
    cache_teacher.run(cfg)

    _step(f"4/5 students ({', '.join(exp.variants)}), {cfg.train.steps} steps x {cfg.train.batch_size} windows each")
    models = {name: _student(cfg, name, out / "students" / name) for name in exp.variants}
    if exp.eval_teacher:
        models[TEACHER] = teacher_dir

    _step(f"5/5 had eval of {len(models)} models on {len(cfg.eval.tasks)} tasks x {cfg.eval.seeds} seeds")
    eval_dirs = []
    for name, model in models.items():
        ecfg = copy.deepcopy(cfg)
        ecfg.eval.model, ecfg.eval.out = str(model), str(out / "eval" / name)
        evaluate.run(ecfg)
        eval_dirs.append(ecfg.eval.out)

    evaluate.compare(eval_dirs, str(out))
    verdict = judge(eval_dirs)
    teacher_line = (f"Teacher: {report.parameters:,} parameters, held-out MLM accuracy {report.val_accuracy:.4f} "
                    f"(chance: uniform {report.chance_uniform:.5f}, most frequent 6-mer {report.chance_majority:.4f}), "
                    f"loss {report.val_loss:.3f} (6-mer frequencies without context: {report.unigram_loss:.3f}).")
    with open(out / "summary.md", "a") as f:
        f.write(f"\n{verdict.text()}\n{teacher_line}\nData: {exp.data}, generator seed {seed}; "
                f"wall time {time.perf_counter() - start:.0f} s.\n")
    (out / "verdict.json").write_text(json.dumps(dataclasses.asdict(verdict), indent=2) + "\n")
    print(f"\n{verdict.text()}\n{teacher_line}\nexperiment finished in {time.perf_counter() - start:.0f} s: "
          f"{out / 'summary.md'}, {out / 'summary.png'}", flush=True)
    return verdict


def judge(eval_dirs: list[str | Path]) -> Verdict:
    """Per model the test metric averaged over tasks (at each task's lr chosen on validation),
    its spread over fine-tuning seeds, and the claims HAD > recon-only > random init (+ others)."""
    from had.evaluation.report import model_label, summarize
    from had.evaluation.results import read_results

    rows = [r for d in eval_dirs for r in read_results(Path(d) / "results.parquet")]
    chosen = {(s.model, s.task): s.lr for s in summarize(rows)}
    per_seed: dict[str, dict[str, dict[int, float]]] = {}
    for r in rows:
        model = model_label(r["model"])
        if chosen.get((model, r["task"])) == r["lr"]:
            per_seed.setdefault(model, {}).setdefault(r["task"], {})[r["seed"]] = r["test_metric"]
    task_means = {m: {t: float(np.mean(list(s.values()))) for t, s in tasks.items()} for m, tasks in per_seed.items()}
    average = {m: float(np.mean(list(t.values()))) for m, t in task_means.items()}
    seed_means = {}
    for m, tasks in per_seed.items():
        seeds = sorted(set.intersection(*(set(s) for s in tasks.values())))
        seed_means[m] = [float(np.mean([tasks[t][s] for t in tasks])) for s in seeds]
    pairs = [("had", "recon_only", True), ("recon_only", "random_init", True), ("had", "random_init", False),
             ("had", "distill_only", False), ("had", "no_attention", False), ("had", "mlm_only", False),
             ("had", TEACHER, False)]
    claims = []
    for better, worse, chain in pairs:
        if better in task_means and worse in task_means:
            shared = sorted(set(task_means[better]) & set(task_means[worse]))
            diffs = np.array([task_means[better][t] - task_means[worse][t] for t in shared])
            seeds = min(len(seed_means[better]), len(seed_means[worse]))
            claims.append({"better": better, "worse": worse, "margin": float(diffs.mean()),
                           "wins": int((diffs > 0).sum()), "tasks": len(shared), "holds": bool(diffs.mean() > 0),
                           "separated": seeds > 1 and min(seed_means[better]) > max(seed_means[worse]),
                           "seeds": seeds, "chain": chain})
    return Verdict(task_means, average, seed_means, claims)


def _data(exp: Experiment, root: Path, seed: int, real: tuple[str, str] | None) -> tuple[str, str, str, list[str]]:
    """(genome FASTA, task root, benchmark, task names) for the experiment's data (real: `real_data`'s pair)."""
    if real is not None:
        return (*real, "gue", list(exp.real_tasks))
    genome = root / "genome.fa"
    synthetic.write_genome(genome, seed=seed, n_contigs=exp.n_contigs, contig_length=exp.contig_length)
    synthetic.write_tasks(root / "tasks", "nt", seed=seed, n_train=exp.task_train, n_test=exp.task_test,
                          length=exp.task_length, tasks=exp.tasks)
    return str(genome), str(root / "tasks"), "nt", list(exp.tasks)


def real_data(data_root: str | Path | None) -> tuple[str, str]:
    """(genome FASTA, GUE task root) of a --data-root folder: genome/<exactly one FASTA> and GUE/."""
    if data_root is None:
        raise HadError("--data real needs --data-root: a folder with genome/<one FASTA> and GUE/ "
                       "(e.g. ../shared/data/real in a checkout)")
    genome_dir, tasks = Path(data_root) / "genome", Path(data_root) / "GUE"
    fastas = sorted(p for p in genome_dir.glob("*") if p.name.endswith(FASTA_SUFFIXES)) if genome_dir.is_dir() else []
    if len(fastas) != 1:
        found = "none" if not fastas else ", ".join(p.name for p in fastas)
        raise HadError(f"--data-root {data_root}: expected exactly one FASTA in {genome_dir} "
                       f"({', '.join(FASTA_SUFFIXES)}), found {found}")
    if not tasks.is_dir():
        raise HadError(f"--data-root {data_root}: no GUE/ folder of tasks in it")
    return str(fastas[0]), str(tasks)


def _student(cfg: RunConfig, name: str, out: Path) -> Path:
    """Train one variant (or save its random initialisation); returns its model directory."""
    from had.pipeline import train

    switches = VARIANTS[name]
    scfg = copy.deepcopy(cfg)
    scfg.student = {**cfg.student, **(switches or {})}
    scfg.train.out = str(out)
    scfg.train.resume = True
    if switches is not None:
        print(f"-- student {name}: {switches or 'distillation + reconstruction'}", flush=True)
        return Path(train.run(scfg))
    import torch

    from had.cache_store.reader import CacheReader
    from had.student import HadConfig, HadForPretraining

    torch.manual_seed(cfg.train.seed)  # the same initialisation `had train` starts from
    teacher_dim = CacheReader(cfg.cache.path).manifest["teacher_dim"]
    model = HadForPretraining(HadConfig.from_kwargs({"teacher_dim": teacher_dim, **scfg.student}))
    model.save_pretrained(out / "model")
    print(f"-- student {name}: saved at its random initialisation (seed {cfg.train.seed})", flush=True)
    return out / "model"


def _check_settings(out: Path, exp: Experiment, cfg: RunConfig, seed: int) -> None:
    """Record the experiment's settings in `out`, or refuse a re-run into `out` with other ones.

    Runs before anything is written: a re-run resumes (reusing the teacher, cache, students and
    finished fine-tuning runs), which is only right with the same settings; it may add models.
    """
    settings = json.loads(json.dumps({
        "seed": seed,
        "experiment": {k: v for k, v in dataclasses.asdict(exp).items() if k not in ("variants", "eval_teacher")},
        "run": dataclasses.asdict(cfg),
    }, default=str))
    path = out / SETTINGS
    if not path.is_file():
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=1) + "\n")
        return
    changed = changes(json.loads(path.read_text()), settings)
    if changed:
        raise HadError(f"{out} holds an experiment with other settings ({'; '.join(changed[:6])}): use another --out "
                       "(a re-run into the same --out resumes it: only experiment.variants and "
                       "experiment.eval_teacher may change)")


def _step(title: str) -> None:
    print(f"\n== {title} ==", flush=True)

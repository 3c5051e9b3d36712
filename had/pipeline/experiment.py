"""`had experiment`: does the distillation work? A controlled reproduction, end to end.

    had experiment --preset cpu --data synthetic --seed 0 --out runs/science-syn0     # 2 CPU cores
    had experiment --preset cpu --data real --data-root ../shared/data/real --out runs/science-real  # chr20 + GUE
    had experiment --preset gpu --data synthetic --seed 1 --out runs/science-gpu       # one GPU

1. genome: a synthetic one from the generator seed (`had.data.synthetic`: half of it repeat copies,
   with its classification tasks in the NT layout), or a real one from `--data-root`
   (genome/<one FASTA> + GUE tasks; the tail of its contig held out for the gate);
2. teacher: a small NT-style 6-mer ESM pretrained on that genome (`had.teacher_pretrain`), the last
   contig of a synthetic genome held out whole; cached in --out per (genome, teacher settings) and reused;
3. `cache-teacher`, then students trained with the same budget (steps, batch, windows, size), each
   variant once per pretraining seed (`train.seed` = 0 .. pretrain_seeds - 1: initialisation and data
   order, shared by the variants, so that they pair by seed): HAD (distillation + reconstruction),
   recon-only (no distillation), no attention layer, random init (no pretraining at all), and on
   request distill-only and MLM-only (no teacher);
4. the linear probe (`had eval --protocol probe`) of every student, of the teacher and, for reference,
   of the teacher's own initialisation (what its pretraining added); with
   `experiment.finetune`, fine-tuning too (the second, reported arm);
5. the verdict, on the probe: the teacher gate (`Gate`, fixed before any verdict), then for HAD -
   recon-only, recon-only - random init, HAD - random init and HAD - no-attention the mean paired
   difference over pretraining seeds (tasks averaged within each seed) with its 95 % bootstrap
   interval (`had.evaluation.paired`): a claim holds only when the interval is above 0, and when the
   teacher fails the gate every claim is "uninformative: the teacher knows too little".
   `summary.md`, `summary.png` (the paired differences with their intervals) and `verdict.json`,
   with the wall time of every part.

The RunConfig every student shares comes from `had/configs/science-<preset>.yaml` (`--set` overrides
it); the rest (genome size, tasks, teacher size, variants, seeds) is the `Experiment` preset below
(`--set experiment.<key>=<value>` overrides it). Re-running into the same --out resumes: the teacher,
the cache and trained students are reused (an interrupted teacher continues from its last checkpoint)
and finished eval runs skipped. Only the models and arms
(`experiment.variants`, `experiment.pretrain_seeds`, `experiment.finetune`) may change then: other
settings are refused before anything is written (`experiment.json` in --out records them).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import time
import typing
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from had.config import RunConfig, changes, coerce, load_config
from had.data import synthetic
from had.errors import HadError
from had.evaluation.paired import paired_difference, task_means
from had.teacher_pretrain import MASK_ONLY, TeacherPretrainConfig

FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fa.gz", ".fasta.gz", ".fna.gz")

# Student switches of every variant (None: not pretrained, saved at its random initialisation).
VARIANTS: dict[str, dict | None] = {
    "had": {},
    "recon_only": {"objective": "recon"},
    "distill_only": {"objective": "distill"},
    "no_attention": {"use_attention": False},
    "mlm_only": {"objective": "mlm"},
    "random_init": None,
}
TEACHER = "teacher"
TEACHER_INIT = "teacher_init"  # the teacher's own initialisation: what its pretraining added, for reference
SETTINGS = "experiment.json"  # the settings a re-run into the same --out must repeat
TIMINGS = "timings.jsonl"  # one line per invocation: a resumed one times only what it did itself
MAY_CHANGE = ("variants", "pretrain_seeds", "finetune")  # on a re-run into the same --out


@dataclass
class Experiment:
    """What the experiment runs beyond the shared RunConfig."""

    preset: str = "cpu"  # science-<preset>.yaml holds the students' RunConfig
    data: str = "synthetic"  # synthetic | real
    # Synthetic genome. The teacher reads all of it but the last contig (held out for the gate):
    # on 0.4 Mb its MLM memorised the training windows; on 8 Mb it uses context on held-out DNA
    # (RESULTS.md, Science). Half of it repeat copies: the structure a 6-mer MLM learns first.
    n_contigs: int = 8
    contig_length: int = 1_000_000
    repeat_fraction: float = 0.5
    cache_contigs: int | None = 1  # cache-teacher (so the students) reads the first N contigs; None = all
    # Local motifs (promoter_tata, splice_sites_donors), a local motif pair with spacing and
    # orientation rules (enhancers), a long-range orientation XOR (enhancers_long_range), and which
    # repeat family a diverged fragment comes from (repeat_family).
    tasks: list[str] = field(default_factory=lambda: [
        "promoter_tata", "splice_sites_donors", "enhancers", "enhancers_long_range", "repeat_family"])
    task_train: int = 400  # synthetic examples per task split: few labelled rows, so pretraining can matter
    task_test: int = 400
    task_length: int = 100
    real_tasks: list[str] = field(default_factory=lambda: ["prom/prom_core_tata", "tf/0", "mouse/0"])
    real_max_train: int | None = 400  # eval.max_train_samples for the GUE tasks (None = all)
    variants: list[str] = field(default_factory=lambda: ["had", "recon_only", "random_init", "no_attention"])
    pretrain_seeds: int = 5  # students per variant, train.seed = 0 .. pretrain_seeds - 1 (the paired unit)
    finetune: bool = False  # also fine-tune every model (eval.lrs x eval.seeds): the second, reported arm
    # 4000 steps at lr 2e-3: 0.68 nats under the 6-mer marginal on the held-out contig where 2000 at 1e-3
    # gave 0.27-0.34 (generator seeds 21-23, one of which missed the gate's 0.3); 12 min on 2 idle cores.
    teacher: TeacherPretrainConfig = field(default_factory=lambda: TeacherPretrainConfig(
        hidden_size=128, num_layers=4, num_heads=4, window=258, batch_size=64, steps=4000, lr=2e-3,
        val_windows=512, heldout_contig=True))


PRESETS: dict[str, Experiment] = {
    "cpu": Experiment(),
    # Unmeasured: sized so that one H100 runs it in about an hour.
    "gpu": Experiment(
        preset="gpu", n_contigs=32, contig_length=2_000_000, cache_contigs=4, task_train=2000, task_test=1000,
        task_length=400, finetune=True,
        tasks=list(Experiment().tasks) + ["splice_sites_acceptors", "regulatory_types"],
        real_tasks=["prom/prom_core_tata", "prom/prom_300_tata", "tf/0", "mouse/0"], real_max_train=None,
        teacher=TeacherPretrainConfig(hidden_size=384, num_layers=8, num_heads=8, window=1020, batch_size=64,
                                      steps=8000, lr=1e-3, val_windows=1024, heldout_contig=True, device="cuda")),
}


GATE_HELDOUT = 0.3  # nats the teacher must be under the 6-mer marginal on held-out DNA ...
GATE_REPEATS = 0.5  # ... and inside the held-out repeats (soft-masked letters)
UNINFORMATIVE = "uninformative: the teacher knows too little"
# The claims, each paired by pretraining seed: (better, worse, part of the chain HAD > recon-only > random init).
CLAIMS = [("had", "recon_only", True), ("recon_only", "random_init", True), ("had", "random_init", False),
          ("had", "no_attention", False)]


@dataclass
class Gate:
    """Does the teacher know enough for the verdict to mean anything? Fixed before any verdict is seen:
    held-out MLM loss >= GATE_HELDOUT nats under the 6-mer marginal, >= GATE_REPEATS inside repeats,
    and the teacher's own probe mean (over tasks) above random init's (over tasks and seeds)."""

    heldout: str  # what the teacher never trained on (a contig, or the tail of every contig)
    heldout_gain: float  # 6-mer marginal's held-out loss - the teacher's (nats)
    repeat_gain: float | None  # the same inside soft-masked repeats (None: no repeat tokens held out)
    repeat_tokens: int
    teacher_probe: float | None  # None: not measured
    random_probe: float | None
    teacher_init_probe: float | None = None  # reported, not a criterion: the teacher before pretraining

    def checks(self) -> dict[str, bool]:
        return {
            "heldout": self.heldout_gain >= GATE_HELDOUT,
            "repeats": self.repeat_gain is not None and self.repeat_gain >= GATE_REPEATS,
            "probe": None not in (self.teacher_probe, self.random_probe) and self.teacher_probe > self.random_probe,
        }

    @property
    def passed(self) -> bool:
        return all(self.checks().values())

    def text(self) -> str:
        def fmt(x):
            return "not measured" if x is None else f"{x:.3f}"

        ok = {k: "(yes)" if v else "(NO)" for k, v in self.checks().items()}
        return "\n".join([
            f"## Teacher gate: {'PASSED' if self.passed else 'FAILED'}", "",
            f"- held-out MLM loss under the 6-mer marginal ({self.heldout}): {self.heldout_gain:.3f} nats "
            f"(needs >= {GATE_HELDOUT}) {ok['heldout']}",
            f"- ... inside repeats ({self.repeat_tokens} masked tokens): {fmt(self.repeat_gain)} nats "
            f"(needs >= {GATE_REPEATS}) {ok['repeats']}",
            f"- probe mean over tasks, teacher {fmt(self.teacher_probe)} vs random init {fmt(self.random_probe)} "
            f"(needs teacher > random init) {ok['probe']}",
        ] + ([] if self.teacher_init_probe is None or self.teacher_probe is None else [
            f"- for reference, not a criterion: the teacher's own initialisation probes "
            f"{self.teacher_init_probe:.3f}: pretraining added {self.teacher_probe - self.teacher_init_probe:+.3f}",
        ])) + "\n"


@dataclass
class Arm:
    """One evaluation protocol's results and claims.

    scores: model -> pretraining seed (as text; "-" for the teacher) -> task -> test metric (mean over
    the eval seeds at the lr chosen on validation). claims: better, worse, mean, low, high (95 % paired
    bootstrap interval over pretraining seeds), seeds, diffs, verdict, chain.
    """

    protocol: str
    scores: dict[str, dict[str, dict[str, float]]]
    claims: list[dict]


@dataclass
class Verdict:
    gate: Gate
    arms: list[Arm]  # the probe first (the verdict), then fine-tuning when it ran

    def text(self) -> str:
        parts = [self.gate.text()]
        for arm in self.arms:
            role = "the verdict" if arm.protocol == "probe" else "second arm, reported"
            lines = [f"## {arm.protocol} ({role})", "", _table(arm), "",
                     "| claim | mean paired difference | 95 % bootstrap interval | pretraining seeds | verdict |",
                     "|---|---|---|---|---|"]
            for c in arm.claims:
                lines.append(f"| {c['better']} > {c['worse']} | {c['mean']:+.4f} | [{c['low']:+.4f}, {c['high']:+.4f}] "
                             f"| {len(c['seeds'])} | {c['verdict']} |")
            chain = [c for c in arm.claims if c["chain"]]
            if len(chain) == 2:
                lines.append(f"\nHAD > recon-only > random init ({arm.protocol}): {_chain(chain, self.gate)}.")
            parts.append("\n".join(lines) + "\n")
        return "\n".join(parts)


def _chain(chain: list[dict], gate: Gate) -> str:
    if not gate.passed:
        return UNINFORMATIVE
    return "HOLDS" if all(c["verdict"] == "holds" for c in chain) else "does NOT hold"


def _table(arm: Arm) -> str:
    """Tasks x models: mean over pretraining seeds +- (max - min), and the mean over tasks."""
    models = list(arm.scores)
    tasks = sorted({t for seeds in arm.scores.values() for s in seeds.values() for t in s})
    lines = ["| task | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for task in tasks + ["**mean over tasks**"]:
        cells = []
        for m in models:
            if task in tasks:
                values = [s[task] for s in arm.scores[m].values() if task in s]
            else:
                values = list(task_means(arm.scores[m]).values())
            spread = f" ± {np.ptp(values):.3f}" if len(values) > 1 else ""
            cells.append(f"{np.mean(values):.3f}{spread}" if values else "")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    if data == "real":  # one contig: its tail is what the teacher never trains on
        exp.teacher.heldout_contig = False
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
    if exp.pretrain_seeds < 1:
        raise HadError(f"experiment.pretrain_seeds={exp.pretrain_seeds}: at least 1 (5 or more for a verdict)")
    return exp, load_config(f"science-{exp.preset}", sets=overrides)  # `sets`: `--set key=null` unsets too


def run(exp: Experiment, cfg: RunConfig, out: str | Path, seed: int = 0, data_root: str | Path | None = None
        ) -> Verdict:
    """The whole experiment into `out`; returns (and writes into summary.md) the verdict.

    data_root: with exp.data == "real", a folder holding genome/<one FASTA> and GUE/ (required then).
    """
    from had.pipeline import cache_teacher
    from had.teacher_pretrain import pretrain_teacher, save_initialisation

    out = Path(out)
    start, timings = time.perf_counter(), {}
    real = real_data(data_root) if exp.data == "real" else None  # checked before anything is written
    _check_settings(out, exp, cfg, seed)
    cfg = copy.deepcopy(cfg)
    with _part("genome and tasks", timings):
        cfg.genome.fasta, cfg.eval.data_root, cfg.eval.benchmark, cfg.eval.tasks = _data(exp, out / "data", seed, real)
        if exp.data == "real":
            cfg.eval.max_train_samples = exp.real_max_train
        elif exp.cache_contigs is not None and not cfg.genome.contigs:
            cfg.genome.contigs = [synthetic.contig_name(i) for i in range(min(exp.cache_contigs, exp.n_contigs))]

    with _part("teacher pretraining", timings, "6-mer ESM masked LM"):
        teacher_dir, teacher_cfg = out / TEACHER, dataclasses.replace(exp.teacher, seed=seed)
        report = pretrain_teacher(cfg.genome.fasta, teacher_dir, teacher_cfg)
        if not (out / TEACHER_INIT).is_dir():  # written aside, then renamed: a kill leaves no half folder
            save_initialisation(out / f"{TEACHER_INIT}.tmp", teacher_cfg).replace(out / TEACHER_INIT)

    with _part("had cache-teacher", timings):
        cfg.teacher.model = str(teacher_dir)
        cfg.cache.path = str(out / "cache")
        cfg.cache.overwrite = True
        cache_teacher.run(cfg)

    seeds = range(exp.pretrain_seeds)
    with _part("students", timings, f"{', '.join(exp.variants)} x {exp.pretrain_seeds} pretraining seeds, "
               f"{cfg.train.steps} steps x {cfg.train.batch_size} windows each"):
        models = {(name, str(s)): _student(cfg, name, s, out / "students" / name / f"seed{s}")
                  for name in exp.variants for s in seeds}
    models[(TEACHER, "-")] = teacher_dir
    models[(TEACHER_INIT, "-")] = out / TEACHER_INIT

    arms = {}
    for protocol in ["probe"] + (["finetune"] if exp.finetune else []):
        with _part(protocol, timings, f"{len(models)} models, {len(cfg.eval.tasks)} tasks, {cfg.eval.seeds} seeds"):
            arms[protocol] = {(name, s): _evaluate(cfg, model, out / protocol / (f"{name}-seed{s}" if s != "-" else name),
                                                   protocol) for (name, s), model in models.items()}

    verdict = judge(arms, report)
    timings["total"] = time.perf_counter() - start
    with open(out / TIMINGS, "a") as f:
        f.write(json.dumps({"finished": time.strftime("%Y-%m-%d %H:%M:%S"), "timings_s": timings}) + "\n")
    runs = [json.loads(line) for line in (out / TIMINGS).read_text().splitlines()]
    text = (f"# had experiment: {exp.data} data, generator seed {seed}, {exp.pretrain_seeds} pretraining seeds\n\n"
            f"{verdict.text()}\n{_teacher_line(report)}\n\nWall time (s) of each invocation into this folder "
            "(a resumed one reuses what earlier ones built):\n"
            + "".join(f"- {r['finished']}: " + ", ".join(f"{k} {v:.0f}" for k, v in r["timings_s"].items()) + "\n"
                      for r in runs))
    (out / "summary.md").write_text(text)
    plot(verdict, out / "summary.png")
    (out / "verdict.json").write_text(json.dumps({**dataclasses.asdict(verdict), "gate_passed": verdict.gate.passed,
                                                  "timings_s": timings}, indent=2) + "\n")
    print(f"\n{text}\nexperiment finished: {out / 'summary.md'}, {out / 'summary.png'}", flush=True)
    return verdict


def judge(arms: dict[str, dict[tuple[str, str], str | Path]], report) -> Verdict:
    """The gate and, per arm, every model's scores and the paired claims.

    arms: protocol -> (model, pretraining seed) -> its `had eval` folder; report: the teacher's
    `TeacherPretrainReport`. A task's score is the test metric at the lr chosen on validation, averaged
    over eval seeds (`had.evaluation.report.summarize`)."""
    from had.evaluation.report import summarize
    from had.evaluation.results import read_results

    built = []
    for protocol, dirs in arms.items():
        scores: dict[str, dict[str, dict[str, float]]] = {}
        for (model, seed), d in dirs.items():
            summary = summarize(read_results(Path(d) / "results.parquet"))
            scores.setdefault(model, {})[seed] = {r.task: r.mean for r in summary}
        built.append(Arm(protocol, scores, []))
    probe = next((a for a in built if a.protocol == "probe"), None)

    def mean_of(model):
        return float(np.mean(list(task_means(probe.scores[model]).values()))) if probe and model in probe.scores \
            else None

    repeat_gain = (None if report.repeat_loss is None else report.repeat_unigram_loss - report.repeat_loss)
    gate = Gate(report.heldout, report.unigram_loss - report.val_loss, repeat_gain, report.repeat_tokens,
                mean_of(TEACHER), mean_of("random_init"), mean_of(TEACHER_INIT))
    for arm in built:
        for better, worse, chain in CLAIMS:
            if better in arm.scores and worse in arm.scores:
                d = paired_difference(*(task_means({int(s): t for s, t in arm.scores[m].items()})
                                        for m in (better, worse)))
                arm.claims.append({"better": better, "worse": worse, "mean": d.mean, "low": d.low, "high": d.high,
                                   "seeds": d.seeds, "diffs": d.diffs, "chain": chain,
                                   "verdict": d.verdict if gate.passed else UNINFORMATIVE})
    return Verdict(gate, built)


def plot(verdict: Verdict, path: str | Path) -> None:
    """One panel per arm: each claim's mean paired difference with its 95 % bootstrap interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(verdict.arms), figsize=(6 * len(verdict.arms), 4), squeeze=False)
    for ax, arm in zip(axes[0], verdict.arms):
        names = [f"{c['better']}\n- {c['worse']}" for c in arm.claims]
        means = np.array([c["mean"] for c in arm.claims])
        err = np.array([[c["mean"] - c["low"] for c in arm.claims], [c["high"] - c["mean"] for c in arm.claims]])
        ax.errorbar(range(len(names)), means, yerr=err.reshape(2, -1), fmt="o", capsize=6)
        ax.axhline(0, color="grey", lw=1)
        ax.set_xticks(range(len(names)), names, fontsize="small")
        ax.set_ylabel("paired difference, 95 % CI")
        gate = "" if verdict.gate.passed else f" ({UNINFORMATIVE})"
        ax.set_title(f"{arm.protocol}{gate}", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _teacher_line(report) -> str:
    repeats = ("no held-out repeat tokens" if report.repeat_loss is None else
               f"inside repeats {report.repeat_loss:.3f} (marginal {report.repeat_unigram_loss:.3f}, "
               f"{report.repeat_tokens} masked tokens)")
    return (f"Teacher: {report.parameters:,} parameters, {report.steps} steps in {report.seconds:.0f} s; held out: "
            f"{report.heldout}; MLM accuracy {report.val_accuracy:.4f} (most frequent 6-mer "
            f"{report.chance_majority:.4f}), loss {report.val_loss:.3f} (6-mer marginal {report.unigram_loss:.3f}); "
            f"{repeats}.")


def _data(exp: Experiment, root: Path, seed: int, real: tuple[str, str] | None) -> tuple[str, str, str, list[str]]:
    """(genome FASTA, task root, benchmark, task names) for the experiment's data (real: `real_data`'s pair)."""
    if real is not None:
        return (*real, "gue", list(exp.real_tasks))
    genome = root / "genome.fa"
    synthetic.write_genome(genome, seed=seed, n_contigs=exp.n_contigs, contig_length=exp.contig_length,
                           repeat_fraction=exp.repeat_fraction)
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


def _student(cfg: RunConfig, name: str, seed: int, out: Path) -> Path:
    """Train one variant with pretraining seed `seed` (or save its random initialisation); returns its model dir."""
    from had.pipeline import train

    switches = VARIANTS[name]
    scfg = copy.deepcopy(cfg)
    scfg.student = {**cfg.student, **(switches or {})}
    scfg.train.out, scfg.train.seed, scfg.train.resume = str(out), seed, True
    if switches is not None:
        print(f"-- student {name}, seed {seed}: {switches or 'distillation + reconstruction'}", flush=True)
        return Path(train.run(scfg))
    from had.cache_store.reader import CacheReader

    manifest = CacheReader(cfg.cache.path).manifest
    model = train.init_student(train.student_config(scfg, manifest), seed)  # what `had train` starts from
    model.save_pretrained(out / "model")
    print(f"-- student {name}: saved at its random initialisation (seed {seed})", flush=True)
    return out / "model"


def _evaluate(cfg: RunConfig, model: Path, out: Path, protocol: str) -> Path:
    """`had eval` of one model with one protocol into `out` (resumable); returns `out`."""
    from had.pipeline import eval as evaluate

    ecfg = copy.deepcopy(cfg)
    ecfg.eval.model, ecfg.eval.out, ecfg.eval.protocol = str(model), str(out), protocol
    evaluate.run(ecfg)
    return out


def _check_settings(out: Path, exp: Experiment, cfg: RunConfig, seed: int) -> None:
    """Record the experiment's settings in `out`, or refuse a re-run into `out` with other ones.

    Runs before anything is written: a re-run resumes (reusing the teacher, cache, students and
    finished eval runs), which is only right with the same settings; it may add models and arms.
    """
    settings = json.loads(json.dumps({
        "seed": seed,
        "experiment": {k: v for k, v in dataclasses.asdict(exp).items() if k not in MAY_CHANGE},
        "run": dataclasses.asdict(cfg),
    }, default=str))
    path = out / SETTINGS
    if not path.is_file():
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=1) + "\n")
        return
    recorded = json.loads(path.read_text())
    teacher = recorded.get("experiment", {}).get("teacher")
    if isinstance(teacher, dict):  # recorded before the teacher's corruption settings existed: mask only
        recorded["experiment"]["teacher"] = {**MASK_ONLY, **teacher}
    changed = changes(recorded, settings)
    if changed:
        raise HadError(f"{out} holds an experiment with other settings ({'; '.join(changed[:6])}): use another --out "
                       f"(a re-run into the same --out resumes it: only experiment.{', experiment.'.join(MAY_CHANGE)} "
                       "may change)")


@contextmanager
def _part(name: str, timings: dict[str, float], detail: str = ""):
    """Print the part's name, run it, and record (under `name`) and print its wall time."""
    print(f"\n== {name}{': ' + detail if detail else ''} ==", flush=True)
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start
    print(f"== {name}: {timings[name]:.0f} s ==", flush=True)

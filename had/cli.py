"""The `had` command line: parses options into a RunConfig and calls pipeline.<command>.run(cfg).

Every command takes `--config` (a preset name such as `tiny` or `had-1.1m`, or a YAML path),
options for its main settings, and `--set section.key=value` for anything else. Options left
unset keep the config's value.
"""
from __future__ import annotations

import dataclasses
import functools
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Optional

import typer
import yaml

from had import __version__
from had.config import RunConfig, coerce, load_config, presets
from had.errors import HadError

app = typer.Typer(
    help="HAD: pretrain tiny, fast DNA language models by distilling a large one "
    "(cache the teacher once, train the student on the cache, evaluate on DNA benchmarks).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CONFIG_HELP = "Preset name ({}) or path to a YAML config.".format(", ".join(presets()) or "none found")
SET_HELP = "Override any config key, e.g. --set train.lr=0.004 (repeatable; value parsed as YAML, null unsets)."
# Help texts are rich markup, where a bare "[chr1,chr2]" would be taken for a style tag: escape it.
GENOME_SET_HELP = (" Genome filters: --set genome.contigs=\\[chr1,chr2] (only these contigs), "
                   "--set genome.exclude_contigs=\\[chrM] (all but these), --set genome.max_n_fraction=0.1 "
                   "(skip windows with a larger fraction of N).")
HELP_PRESETS = ("had-1.1m", "tiny")  # the presets whose values `--help` quotes


def _default(dotted: str, unset: str = "none") -> str:
    """Help suffix for an option whose default comes from --config: its value in HELP_PRESETS."""
    section, key = dotted.split(".")
    values = [_word(getattr(getattr(_preset(name), section), key), unset) for name in HELP_PRESETS]
    if len(set(values)) == 1:
        return f" (default: from --config; {values[0]} in {' and '.join(HELP_PRESETS)})"
    return f" (default: from --config; {', '.join(f'{n}: {v}' for n, v in zip(HELP_PRESETS, values))})"


@functools.cache
def _preset(name: str) -> RunConfig:
    return load_config(name)


def _word(value: Any, unset: str) -> str:
    if value is None or value == "":
        return unset
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) or unset
    return str(value)


def _user_errors(fn: Callable) -> Callable:
    """Print HadErrors as one line on stderr and exit 1: users get the message, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HadError as e:
            typer.secho(f"error: {error_line(e)}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None

    return wrapper


def error_line(e: HadError) -> str:
    """The error's message; a HadError raised in a DataLoader worker comes back carrying the worker's
    traceback (torch re-raises it with that text), whose last line is the original message."""
    text = str(e)
    if "\nOriginal Traceback" in text:
        text = text.rstrip().splitlines()[-1].split(": ", 1)[-1]
    return text


def _config(config: str | None, options: dict[str, Any], sets: list[str] | None) -> RunConfig:
    return load_config(config, options, _parse_sets(sets))


def _options(values: dict[str, Any], sections: tuple[str, ...], skip: tuple[str, ...] = (),
             **renamed: str) -> dict[str, Any]:
    """A command's options (its `locals()`) as dotted config keys, for `load_config`.

    An option named like a field of exactly one of `sections` sets that field; `renamed` gives
    the key of the others (option -> section.key); `skip` names the options that are no config
    key. An unset list option (typer: empty) counts as unset, as every other unset option.
    """
    fields = {f.name: {g.name for g in dataclasses.fields(f.default_factory)}
              for f in dataclasses.fields(RunConfig) if f.name in sections}
    out = {}
    for name, value in values.items():
        if name in ("config", "set_", *skip):
            continue
        owners = [section for section in sections if name in fields[section]]
        if name not in renamed and len(owners) != 1:
            raise LookupError(f"option {name!r} sets {len(owners)} config keys of {sections}: name it in renamed")
        out[renamed.get(name) or f"{owners[0]}.{name}"] = None if value in ([], ()) else value
    return out


def _check_student(cfg: RunConfig) -> None:
    """Coerce the `student:` values to HadConfig's argument types and run its checks.

    Imports the student (torch): called by the commands that build it anyway, before the work starts.
    The run config knows no model: this check lives here, where both meet.
    """
    from had.student.configuration_had import HadConfig

    hints = typing.get_type_hints(HadConfig.__init__)
    for key, value in cfg.student.items():
        if key in hints:
            cfg.student[key] = coerce(value, hints[key], f"student.{key}")
    HadConfig.from_kwargs(dict(cfg.student))


def _parse_sets(sets: list[str] | None) -> dict[str, Any]:
    """`--set section.key=value` items -> {"section.key": value parsed as YAML}."""
    overrides = {}
    for item in sets or []:
        key, eq, value = item.partition("=")
        if not eq:
            raise HadError(f"--set {item!r}: expected section.key=value")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise HadError(f"--set {item!r}: the value is not valid YAML ({getattr(e, 'problem', None) or e})") from None
    return overrides


def _version_callback(value: bool) -> None:
    if not value:
        return
    import importlib.metadata as md

    typer.echo(f"had {__version__}")
    for name in ("torch", "triton", "transformers", "zarr", "dask"):
        try:
            typer.echo(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            typer.echo(f"{name} not installed")
    import torch

    if torch.cuda.is_available():
        typer.echo(f"cuda {torch.version.cuda}: {torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})")
    else:
        typer.echo("cuda: no device")
    raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True,
        help="Print had, torch, triton, transformers, zarr and dask versions and the CUDA device, then exit.",
    ),
) -> None:
    """HAD: Hybrid Architecture Distillation for DNA language models."""


@app.command("cache-teacher")
@_user_errors
def cache_teacher(
    config: str = typer.Option("had-1.1m", "--config", "-c", help=CONFIG_HELP),
    fasta: Optional[str] = typer.Option(
        None, help="Genome FASTA or FASTA.gz (required, no default). Read on demand with `samtools faidx` "
        "indexes beside it: .fai for a plain FASTA, .fai + .gzi for a bgzip one; otherwise (no index, or plain "
        "gzip) every worker reads the whole genome into memory, so index large genomes.",
    ),
    bed: Optional[str] = typer.Option(None, help="BED file of intervals to cut windows from (default: whole contigs)."),
    split: Optional[str] = typer.Option(None, help="Keep only BED rows whose split column equals this, e.g. train (default: all rows)."),
    window: Optional[int] = typer.Option(None, help="Window length in nucleotides." + _default("genome.window")),
    stride: Optional[int] = typer.Option(None, help="Step between window starts (default: the window length)."),
    teacher: Optional[str] = typer.Option(None, help="Teacher: HF hub id or local directory." + _default("teacher.model")),
    trust_remote_code: Optional[bool] = typer.Option(
        None, "--trust-remote-code/--no-trust-remote-code",
        help="Allow the teacher's own modeling code (real NTv2 checkpoints need it)." + _default("teacher.trust_remote_code"),
    ),
    layer: Optional[int] = typer.Option(
        None, help="Teacher hidden-state index to cache (-1 = last, after the final norm)." + _default("teacher.layer")),
    dtype: Optional[str] = typer.Option(
        None, help="Teacher compute dtype: auto (bf16 on GPU, fp32 on CPU), fp32, bf16, fp16." + _default("teacher.dtype")),
    max_tokens_per_batch: Optional[int] = typer.Option(
        None, help="Teacher tokens per forward batch, padding included." + _default("teacher.max_tokens_per_batch")),
    mask_ratio: Optional[float] = typer.Option(
        None, help="Fraction of maskable teacher tokens (NTv2: 6-mers) masked per view, in (0, 1]." + _default("mask.ratio")),
    views: Optional[int] = typer.Option(None, help="Independent mask draws (views) per window." + _default("mask.views")),
    rc: Optional[bool] = typer.Option(
        None, "--rc/--no-rc", help="Also cache reverse-complement views." + _default("mask.reverse_complement")),
    teacher_input: Optional[str] = typer.Option(
        None, help="What the teacher sees at masked tokens: masked (mask token) or full." + _default("mask.teacher_input")),
    seed: Optional[int] = typer.Option(
        None, help="Masking seed (masks depend only on seed, window and view)." + _default("mask.seed")),
    out: Optional[str] = typer.Option(
        None, "--out", "-o", help="Cache directory or fsspec URL (s3://, gs://)." + _default("cache.path")),
    shard_windows: Optional[int] = typer.Option(
        None, help="Window-views per shard (one shard = one task = one write)." + _default("cache.shard_windows")),
    feature_dtype: Optional[str] = typer.Option(
        None, help="Stored feature dtype: fp16, bf16 or int8 (per-token scale)." + _default("cache.feature_dtype")),
    workers: Optional[int] = typer.Option(
        None, help="Local Dask workers (0 = one per visible GPU, or 1 on CPU)." + _default("cache.workers")),
    scheduler: Optional[str] = typer.Option(
        None, help="Address of an existing Dask scheduler, e.g. tcp://host:8786 (default: none, a local cluster)."),
    overwrite: Optional[bool] = typer.Option(
        None, "--overwrite/--no-overwrite",
        help="Replace a had cache written with a different config (a folder holding anything else is always "
             "refused)." + _default("cache.overwrite")),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (windows, tokens, bytes, GPU-hours) and exit."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP + GENOME_SET_HELP),
) -> None:
    """Run the frozen teacher once over a genome and write its features into a sharded Zarr cache.

    Resumable: re-running the same command skips finished shards. Options left out take the
    --config preset's value (default preset had-1.1m: 1024-nt windows, NTv2-500M teacher).
    Contig and N filters are --set keys: genome.contigs, genome.exclude_contigs, genome.max_n_fraction.
    Example: had cache-teacher --fasta hg38.fa.gz --teacher InstaDeepAI/nucleotide-transformer-v2-500m-multi-species
    --trust-remote-code --out /data/hg38-cache
    """
    options = _options(locals(), ("genome", "teacher", "mask", "cache"), skip=("dry_run",), teacher="teacher.model",
                       mask_ratio="mask.ratio", rc="mask.reverse_complement", out="cache.path")
    cfg = _config(config, options, set_)
    from had.pipeline import cache_teacher as pipeline

    if dry_run:
        pipeline.dry_run(cfg)
    else:
        pipeline.run(cfg)


@app.command("cache-info")
@_user_errors
def cache_info(
    path: str = typer.Argument(..., help="Cache directory or fsspec URL."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Re-check every shard's checksum."),
) -> None:
    """Print a cache's manifest summary and verify its shards (exit status 1 when any shard fails)."""
    from had.pipeline import cache_teacher as pipeline

    pipeline.info(path, verify=verify)


@app.command()
@_user_errors
def train(
    config: str = typer.Option("had-1.1m", "--config", "-c", help=CONFIG_HELP),
    cache: Optional[str] = typer.Option(None, help="Teacher cache written by `had cache-teacher`." + _default("cache.path")),
    out: Optional[str] = typer.Option(
        None, "--out", "-o", help="Run directory (checkpoints, metrics.jsonl, model/)." + _default("train.out")),
    steps: Optional[int] = typer.Option(None, help="Optimizer steps." + _default("train.steps")),
    batch_size: Optional[int] = typer.Option(
        None, help="Global batch in window-views (accumulation fills it)." + _default("train.batch_size")),
    micro_batch_size: Optional[int] = typer.Option(
        None, help="Window-views per device per forward pass." + _default("train.micro_batch_size")),
    lr: Optional[float] = typer.Option(
        None, help="Peak AdamW learning rate (cosine schedule with warmup)." + _default("train.lr")),
    num_workers: Optional[int] = typer.Option(None, help="DataLoader worker processes." + _default("train.num_workers")),
    precision: Optional[str] = typer.Option(
        None, help="auto (bf16 autocast on GPU, fp32 on CPU), fp32 or bf16." + _default("train.precision")),
    compile: Optional[bool] = typer.Option(
        None, "--compile/--no-compile", help="torch.compile the student (GDN ops stay eager)." + _default("train.compile")),
    resume: Optional[bool] = typer.Option(
        None, "--resume/--no-resume", help="Continue exactly from the last checkpoint in --out; refused if the cache or any setting that shapes "
             "the run differs (only operational ones such as --num-workers or --log-every may change; "
             "default: off)."),
    checkpoint_every: Optional[int] = typer.Option(
        None, help="Save a checkpoint every N steps." + _default("train.checkpoint_every")),
    log_every: Optional[int] = typer.Option(None, help="Log a metrics line every N steps." + _default("train.log_every")),
    tensorboard: Optional[bool] = typer.Option(
        None, "--tensorboard/--no-tensorboard", help="Also write TensorBoard logs." + _default("train.tensorboard")),
    seed: Optional[int] = typer.Option(None, help="Seed for initialisation and data order." + _default("train.seed")),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda or cuda:N." + _default("train.device")),
    set_: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP + " Student keys: --set student.d_model=96."),
) -> None:
    """Train the HAD student on a teacher cache (the teacher is never loaded).

    One GPU: had train --config had-1.1m --cache /data/hg38-cache --out runs/had.
    Several: torchrun --nproc_per_node=8 -m had train --config had-1.1m --cache ... --out ...
    Options left out take the --config preset's value.
    """
    cfg = _config(config, _options(locals(), ("train",), cache="cache.path"), set_)
    _check_student(cfg)
    from had.pipeline import train as pipeline

    pipeline.run(cfg)


@app.command("eval")
@_user_errors
def eval_(
    config: str = typer.Option("had-1.1m", "--config", "-c", help=CONFIG_HELP),
    model: Optional[str] = typer.Option(
        None, help="A `had train` model/ directory, or any HF encoder, hub id or directory (required, no default)."),
    data_root: Optional[str] = typer.Option(
        None, help="Benchmark root folder, one sub-folder per task (required, no default)."),
    benchmark: Optional[str] = typer.Option(
        None, help="nt (Nucleotide Transformer), gb (Genomic Benchmarks) or gue." + _default("eval.benchmark")),
    task: Optional[list[str]] = typer.Option(None, "--task", help="Task to run (repeatable; default: every task found)."),
    protocol: Optional[str] = typer.Option(
        None, help="finetune (the whole encoder, per lr x seed) or probe (frozen encoder, mean-pooled features, "
        "logistic regression with C chosen on validation; per seed)." + _default("eval.protocol")),
    nt_version: Optional[str] = typer.Option(
        None, help="NT task set: original or revised (recorded with the results)." + _default("eval.nt_version")),
    lr: Optional[list[float]] = typer.Option(
        None, "--lr", help="Learning rate of the grid (repeatable)." + _default("eval.lrs")),
    seeds: Optional[int] = typer.Option(None, help="Seeds per (task, lr)." + _default("eval.seeds")),
    epochs: Optional[int] = typer.Option(
        None, help="Fine-tuning epochs." + _default("eval.epochs", unset="per benchmark: NT 20, GB 10, GUE 10")),
    batch_size: Optional[int] = typer.Option(None, help="Fine-tuning batch size." + _default("eval.batch_size")),
    max_length: Optional[int] = typer.Option(
        None, help="Truncate sequences to this many nucleotides." + _default("eval.max_length", unset="no cut")),
    max_train_samples: Optional[int] = typer.Option(
        None, help="Cap training rows per task (quick runs)." + _default("eval.max_train_samples", unset="all rows")),
    out: Optional[str] = typer.Option(
        None, "--out", "-o", help="Output folder (results.parquet, summary.md, summary.png)." + _default("eval.out")),
    trust_remote_code: Optional[bool] = typer.Option(
        None, "--trust-remote-code/--no-trust-remote-code",
        help="Allow the model's own code (NTv2)." + _default("eval.trust_remote_code")),
    workers: Optional[int] = typer.Option(
        None, help="Run fine-tunings in parallel on N local Dask workers (0 = in-process)." + _default("eval.workers")),
    scheduler: Optional[str] = typer.Option(None, help="Address of an existing Dask scheduler (default: none)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda." + _default("eval.device")),
    compare: Optional[list[str]] = typer.Option(
        None, "--compare", help="Instead of running, put the results of these eval folders side by side (repeatable).",
    ),
    set_: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Fine-tune (or linearly probe) and score a model on NT / Genomic Benchmarks / GUE (resumable sweeps).

    Example: had eval --model runs/had/model --data-root data/nt --benchmark nt --out runs/eval-nt
    Probe: had eval --protocol probe --model runs/had/model --data-root data/nt --out runs/probe-nt
    Options left out take the --config preset's value.
    """
    cfg = _config(config, _options(locals(), ("eval",), skip=("compare",), task="eval.tasks", lr="eval.lrs"), set_)
    from had.pipeline import eval as pipeline

    if compare:
        pipeline.compare(compare, cfg.eval.out)
    else:
        pipeline.run(cfg)


@app.command()
@_user_errors
def demo(
    out: str = typer.Option("demo_out", "--out", "-o", help="Folder for every artifact of the demo."),
    config: str = typer.Option("tiny", "--config", "-c", help=CONFIG_HELP),
    seed: int = typer.Option(0, help="Seed of the synthetic genome, tasks and teacher."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Run the whole pipeline on a built-in synthetic genome with a tiny local teacher (CPU, minutes)."""
    cfg = _config(config, {}, set_)
    _check_student(cfg)
    from had.pipeline import demo as pipeline

    pipeline.run(cfg, Path(out), seed=seed)


# `had experiment --help` must not import the experiment (torch: seconds): the keys are listed here, and
# tests/test_cli.py checks the list against the Experiment and TeacherPretrainConfig dataclasses.
EXPERIMENT_KEYS_HELP = (
    " experiment.<key> sets the experiment itself (preset values in had/pipeline/experiment.py): "
    "n_contigs, contig_length, repeat_fraction (synthetic genome), cache_contigs (contigs the students read; "
    "null = all), tasks, task_train, task_test, task_length (synthetic tasks), real_tasks, real_max_train (GUE "
    "tasks of --data real, training rows; null = all), variants (students to train), pretrain_seeds (students "
    "per variant, the paired unit), finetune (fine-tune every model too: the second arm). "
    "experiment.teacher.<key> sets the teacher's pretraining: hidden_size, num_layers, num_heads, window, "
    "batch_size, steps, lr, weight_decay, warmup_fraction, mask_ratio, random_fraction, keep_fraction (BERT: "
    "0.1 and 0.1; default 0: mask only), val_fraction, heldout_contig, "
    "val_windows, log_every, seed, device. E.g. --set experiment.pretrain_seeds=5 --set experiment.finetune=true "
    "--set experiment.teacher.steps=100."
)


@app.command()
@_user_errors
def experiment(
    preset: str = typer.Option("cpu", help="cpu (2 CPU cores) or gpu (one GPU; bigger genome, teacher, tasks; unmeasured)."),
    data: str = typer.Option("synthetic", help="synthetic (generated from --seed, NT-layout tasks) or real "
                             "(a real genome and GUE tasks from --data-root)."),
    data_root: Optional[str] = typer.Option(
        None, "--data-root", help="With --data real: a folder holding genome/<one FASTA> and "
        "GUE/<group>/<task>/{train,dev,test}.csv, e.g. ../shared/data/real in a checkout (1 Mb of chr20 + GUE) "
        "(default: none; required with --data real)."),
    seed: int = typer.Option(0, help="Generator seed of the synthetic genome and tasks; also seeds the teacher."),
    out: str = typer.Option("runs/science", "--out", "-o",
                            help="Folder for every artifact, summary.md and summary.png. Running again into it "
                                 "resumes (an interrupted teacher from its checkpoint; finished parts reused)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP + EXPERIMENT_KEYS_HELP),
) -> None:
    """Does the distillation work? Teacher pretraining, HAD and its ablations over pretraining seeds, the linear
    probe of all (fine-tuning too on request), a teacher gate and a verdict with paired bootstrap intervals."""
    from had.pipeline import experiment as pipeline

    ours, rest = pipeline.parse_overrides(_parse_sets(set_))
    exp, cfg = pipeline.build(preset, data, rest, ours)
    _check_student(cfg)
    pipeline.run(exp, cfg, out, seed=seed, data_root=data_root)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

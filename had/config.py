"""Run configuration: one dataclass per section, YAML presets, CLI overrides.

A preset (`had/configs/<name>.yaml`) or any YAML file holds the sections below;
every command reads the sections it needs. Unknown keys are an error naming the
section and the key: a key in the wrong section must never be silently ignored.
Every value is checked against its field's type (a YAML file's, a CLI option's or a
`--set` value alike), then against its section's `RULES`, before any command starts work.

    cfg = load_config("tiny", overrides={"train.steps": 20})
    cfg.train.steps  # 20
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from had.data.benchmarks import BENCHMARKS, NT_VERSIONS
from had.data.fasta import WindowSpec
from had.errors import HadError

PRESET_DIR = Path(__file__).parent / "configs"


class ConfigError(HadError):
    """A configuration problem: unknown preset, section or key, unreadable YAML, a bad value."""


Rule = tuple[Callable[[Any], bool], str]  # (test of one value, what a valid value is)


def _at_least(low: int, note: str = "") -> Rule:
    return (lambda v: v >= low), f"must be >= {low}{note}"


def _positive() -> Rule:
    return (lambda v: v > 0), "must be > 0"


def _fraction(low_open: bool = False, high_open: bool = False) -> Rule:
    text = f"must lie in {'(' if low_open else '['}0, 1{')' if high_open else ']'}"
    return (lambda v: (0 < v if low_open else 0 <= v) and (v < 1 if high_open else v <= 1)), text


def _one_of(*choices: str) -> Rule:
    return (lambda v: v in choices), f"must be one of {', '.join(choices)}"


def _device(*fixed: str) -> Rule:
    return (lambda v: v in fixed or re.fullmatch(r"cuda:\d+", v) is not None), f"must be {', '.join(fixed)} or cuda:<index>"


class Section:
    """A config section: `RULES` (field -> rule) beside its fields, checked by `validate`.

    A list or tuple value is checked item by item; None (an Optional left unset) always passes.
    """

    # field -> Rule; a class attribute without annotation, so neither a dataclass field nor a type hint
    # (type hints are the keys a section accepts)
    RULES = {}

    def validate(self, name: str) -> None:
        """ConfigError naming `name.key` for the first value that breaks its rule, then `check`."""
        for key, (ok, rule) in self.RULES.items():
            value = getattr(self, key)
            items = value if isinstance(value, (list, tuple)) else [value]
            if any(v is not None and not ok(v) for v in items):
                raise ConfigError(f"{name}.{key}={_show(value)}: {rule}")
        self.check()

    def check(self) -> None:
        """Rules that tie two values of the section together (none by default)."""


@dataclass
class GenomeConfig(WindowSpec, Section):
    """The `genome:` section: the fields are the data layer's own (`had.data.fasta.WindowSpec`)."""

    RULES = {
        "window": _at_least(6, " nt (one 6-mer teacher token)"),
        "stride": _at_least(1),
        "max_n_fraction": _fraction(),
    }


@dataclass
class TeacherConfig(Section):
    model: str = "InstaDeepAI/nucleotide-transformer-v2-500m-multi-species"  # hub id or dir
    trust_remote_code: bool = False  # real NTv2 checkpoints need it (custom SwiGLU FFN)
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
    layer: int = -1  # hidden-state index to cache; -1 = last (after the final norm)
    max_tokens_per_batch: int = 65536  # teacher tokens per forward batch, padding included
    device: str = "auto"  # auto | cpu | cuda
    tokenizer: str = "auto"  # family of its tokenizer files: auto (detected) | kmer | bpe | char
    # Intra-op threads of a CPU teacher's forward, fixed rather than taken from OMP_NUM_THREADS or the
    # core count: fp32 sums round differently with each thread count (cache FORMAT.md, "Determinism").
    cpu_threads: int = 1

    RULES = {
        "dtype": _one_of("auto", "fp32", "bf16", "fp16"),
        "layer": _at_least(-1, " (-1 = the last layer)"),
        "max_tokens_per_batch": _at_least(1),
        "device": _device("auto", "cpu", "cuda"),
        "tokenizer": _one_of("auto", "kmer", "bpe", "char"),
        "cpu_threads": _at_least(1),
    }


@dataclass
class MaskConfig(Section):
    ratio: float = 0.15  # fraction of maskable teacher tokens masked (stage 1; NTv2: the 6-mers)
    views: int = 1  # independent mask draws per window
    reverse_complement: bool = False  # add a reverse-complement view for every mask view
    teacher_input: str = "masked"  # masked | full: what the teacher sees at masked tokens
    seed: int = 0
    span_tokens: int = 1  # mask runs of this many consecutive teacher tokens (single-nucleotide teachers: spans of nt)

    RULES = {
        "ratio": _fraction(low_open=True),
        "views": _at_least(1),
        "teacher_input": _one_of("masked", "full"),
        "seed": _at_least(0),
        "span_tokens": _at_least(1),
    }


@dataclass
class CacheConfig(Section):
    path: str = "cache"  # cache directory or fsspec URL (s3://, gs://, memory://)
    shard_windows: int = 256  # window-views per shard (one shard = one task = one write)
    feature_dtype: str = "fp16"  # fp16 | bf16 | int8 (per-token absmax scale)
    compression_level: int = 1  # zstd level
    workers: int = 0  # local Dask workers; 0 = one per visible GPU, or 1 on CPU
    scheduler: str | None = None  # address of an existing Dask scheduler
    overwrite: bool = False  # replace a cache written with a different config

    RULES = {
        "shard_windows": _at_least(1),
        "feature_dtype": _one_of("fp16", "bf16", "int8"),
        "workers": _at_least(0),
    }


@dataclass
class TrainConfig(Section):
    out: str = "runs/had"  # run directory: checkpoints, metrics.jsonl, final model
    steps: int = 10_000
    batch_size: int = 1024  # global batch in window-views
    micro_batch_size: int = 64  # per device per forward; accumulation fills the rest
    lr: float = 8e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_fraction: float = 0.1
    grad_clip: float = 1.0
    precision: str = "auto"  # auto (bf16 autocast on GPU, fp32 on CPU) | fp32 | bf16
    compile: bool = False
    num_workers: int = 4  # DataLoader worker processes
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    resume: bool = False
    tensorboard: bool = False
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:<index> (had.runtime.resolve_device)

    RULES = {
        "steps": _at_least(1),
        "batch_size": _at_least(1),
        "micro_batch_size": _at_least(1),
        "lr": _positive(),
        "weight_decay": _at_least(0),
        "betas": _fraction(high_open=True),
        "warmup_fraction": _fraction(),
        "grad_clip": _positive(),
        "precision": _one_of("auto", "fp32", "bf16"),
        "num_workers": _at_least(0),
        "log_every": _at_least(1),
        "checkpoint_every": _at_least(1),
        "keep_checkpoints": _at_least(1),
        "seed": _at_least(0),
        "device": _device("auto", "cpu", "cuda"),
    }

    def check(self) -> None:
        # That micro-batches x ranks divide the batch is the training loop's check: it knows the ranks.
        if self.micro_batch_size > self.batch_size:
            raise ConfigError(f"train.micro_batch_size={self.micro_batch_size}: must be <= train.batch_size={self.batch_size}")


@dataclass
class EvalConfig(Section):
    model: str = ""  # had save_pretrained dir, or any HF encoder (hub id / dir)
    data_root: str = ""  # benchmark root folder
    benchmark: str = "nt"  # nt | gb | gue
    tasks: list[str] = field(default_factory=list)  # empty = every task under data_root
    protocol: str = "finetune"  # finetune | probe (frozen encoder + logistic regression; no lrs, no epochs)
    nt_version: str = "revised"  # original | revised (recorded with every result)
    lrs: list[float] = field(default_factory=lambda: [1e-3, 2e-3])
    seeds: int = 10
    epochs: int | None = None  # None = benchmark default (NT 20, GB 10, GUE 10)
    batch_size: int = 32
    max_length: int | None = None  # nucleotides; None = longest sequence of the task
    val_fraction: float = 0.1
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    out: str = "runs/eval"
    trust_remote_code: bool = False
    workers: int = 0  # Dask workers for runs in parallel; 0 = run in-process
    scheduler: str | None = None
    max_train_samples: int | None = None  # cap per task (quick runs); None = all
    device: str = "auto"

    RULES = {
        "benchmark": _one_of(*BENCHMARKS),
        "protocol": _one_of("finetune", "probe"),
        "nt_version": _one_of(*NT_VERSIONS),
        "lrs": _positive(),
        "seeds": _at_least(1),
        "epochs": _at_least(1, " (null for the benchmark's default)"),
        "batch_size": _at_least(1),
        "max_length": _at_least(6, " nt (one 6-mer token; null for no cut)"),
        "val_fraction": _fraction(low_open=True, high_open=True),
        "warmup_fraction": _fraction(),
        "weight_decay": _at_least(0),
        "workers": _at_least(0),
        "max_train_samples": _at_least(1, " (null for all rows)"),
        "device": _device("auto", "cpu", "cuda"),
    }

    def check(self) -> None:
        if not self.lrs:
            raise ConfigError("eval.lrs=[]: give at least one learning rate")


@dataclass
class RunConfig:
    genome: GenomeConfig = field(default_factory=GenomeConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    student: dict[str, Any] = field(default_factory=dict)  # HadConfig keyword arguments
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        """Write the resolved config as YAML (what `--config <path>` reads back)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(yaml.safe_dump(_plain(self.to_dict()), sort_keys=False))

    def validate(self) -> None:
        """Check every section's values against its rules (the student's: HadConfig, run by the CLI)."""
        for f in dataclasses.fields(self):
            if f.name != "student":
                getattr(self, f.name).validate(f.name)


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_config(name_or_path: str | None = None, overrides: dict[str, Any] | None = None,
                sets: dict[str, Any] | None = None) -> RunConfig:
    """Build a RunConfig from a preset name or YAML path, apply dotted overrides, then validate it.

    Overrides whose value is None are skipped, so CLI options left unset keep the preset's value.
    `sets` (`--set key=value`) are applied after them, None included: `--set eval.epochs=null`.
    """
    raw: dict[str, Any] = {}
    if name_or_path:
        raw = _read_yaml(_resolve(name_or_path))
    cfg = from_dict(raw, source=str(name_or_path))
    for key, value in (overrides or {}).items():
        if value is not None:
            set_value(cfg, key, value)
    for key, value in (sets or {}).items():
        set_value(cfg, key, value)
    cfg.validate()
    return cfg


def from_dict(raw: dict[str, Any], source: str = "config") -> RunConfig:
    sections = {f.name: f for f in dataclasses.fields(RunConfig)}
    kwargs = {}
    for name, body in raw.items():
        if name not in sections:
            raise ConfigError(f"{source}: unknown section '{name}'{_suggest(name, sections)}")
        if name == "student":
            kwargs[name] = dict(body or {})
            continue
        kwargs[name] = _build_section(sections[name].default_factory, body or {}, source, name)
    return RunConfig(**kwargs)


def set_value(cfg: RunConfig, dotted: str, value: Any) -> None:
    """Set `section.key` on cfg, coerced to the field's type (`coerce`); student keys go through
    unchecked here (HadConfig checks them: `had.cli`). Value rules are checked once all values are set (`validate`)."""
    section, _, key = dotted.partition(".")
    sections = [f.name for f in dataclasses.fields(RunConfig)]
    if not key:
        raise ConfigError(f"override '{dotted}': expected <section>.<key>")
    if section not in sections:
        raise ConfigError(f"override '{dotted}': unknown section '{section}' (sections: {', '.join(sections)})")
    target = getattr(cfg, section)
    if section == "student":
        target[key] = value
        return
    hints = typing.get_type_hints(type(target))  # resolves the string annotations
    if key not in hints:
        raise ConfigError(f"unknown key '{key}' in section '{section}'{_suggest(key, hints)}")
    setattr(target, key, coerce(value, hints[key], dotted))


def changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """'key old (now new)' for every leaf that differs between two nested dicts, keys sorted (for messages)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changes(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {a} (now {b})")
    return out


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-able object (dataclass, dict, ...)."""
    import hashlib

    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    blob = json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _build_section(factory, body: dict[str, Any], source: str, name: str):
    if not isinstance(body, dict):
        raise ConfigError(f"{source}: {name}: expected a mapping, got {type(body).__name__}")
    section = factory()
    hints = typing.get_type_hints(factory)
    for key, value in body.items():
        if key not in hints:
            raise ConfigError(f"{source}: {name}: unknown key '{key}'{_suggest(key, hints)}")
        setattr(section, key, coerce(value, hints[key], f"{source}: {name}.{key}"))
    return section


_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def coerce(value: Any, hint: Any, name: str) -> Any:
    """`value` as the field type `hint` (int, float, bool, str, list[T], tuple[T, ...], T | None).

    Conversions are the lossless ones only: an int where a float goes, an int where a string goes
    (contig `1`), a number in a string where a float goes (YAML 1.1 reads `8e-3` as a string), and
    a single value where a list goes (`--set genome.contigs=chr2`). Anything else is a ConfigError
    naming `name`: `256.0` is no window length, `maybe` is no boolean.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = next(a for a in args if a is not type(None))
        return None if value is None else coerce(value, inner, name)
    if origin is list:
        items = value if isinstance(value, (list, tuple)) else [value]
        return [coerce(v, args[0], name) for v in items]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{name}: expected a list of {len(args)} values, got {_show(value)}")
        return tuple(coerce(v, a, name) for v, a in zip(value, args))
    scalar = _scalar(value, hint)
    if scalar is None:
        raise ConfigError(f"{name}: expected {_KINDS[hint]}, got {_show(value)}")
    return scalar


def _scalar(value: Any, hint: type) -> Any:
    """`value` as the scalar type `hint`, or None where it is none."""
    if isinstance(value, bool) or hint is bool:  # bool is an int subclass, but true is no number
        return value if isinstance(value, bool) and hint is bool else None
    if hint is int:
        return value if isinstance(value, int) else None
    if hint is float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return number if math.isfinite(number) else None
    return str(value) if isinstance(value, (str, int)) else None


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML (null, true, [0.9, 0.95]), strings quoted."""
    if isinstance(value, str):
        return repr(value)
    return json.dumps(_plain(value), default=str)


def _resolve(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if not preset.is_file():
        raise ConfigError(f"unknown preset '{name_or_path}' (presets: {', '.join(presets())})")
    return preset


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config: {e}") from None
    except yaml.MarkedYAMLError as e:  # one line, not yaml's caret diagram
        mark = e.problem_mark or e.context_mark
        raise ConfigError(f"{path}:{mark.line + 1}:{mark.column + 1}: not valid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def _suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj

"""Run configuration: one dataclass per section, YAML presets, CLI overrides.

A preset (`had/configs/<name>.yaml`) or any YAML file holds the sections below;
every command reads the sections it needs. Unknown keys are an error naming the
section and the key: a key in the wrong section must never be silently ignored.

    cfg = load_config("tiny", overrides={"train.steps": 20})
    cfg.train.steps  # 20
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from had.errors import HadError

PRESET_DIR = Path(__file__).parent / "configs"


class ConfigError(HadError):
    """A configuration problem: unknown preset, section or key, unreadable YAML."""


@dataclass
class GenomeConfig:
    fasta: str = ""  # FASTA or FASTA.gz (a .fai beside it enables random access)
    bed: str | None = None  # optional BED of intervals to cut windows from
    split: str | None = None  # keep only BED rows whose split column equals this
    window: int = 1024  # window length in nucleotides
    stride: int | None = None  # step between window starts; None = window (no overlap)
    contigs: list[str] = field(default_factory=list)  # include only these (empty = all)
    exclude_contigs: list[str] = field(default_factory=list)
    max_n_fraction: float = 0.5  # windows with a larger fraction of N are skipped


@dataclass
class TeacherConfig:
    model: str = "InstaDeepAI/nucleotide-transformer-v2-500m-multi-species"  # hub id or dir
    trust_remote_code: bool = False  # real NTv2 checkpoints need it (custom SwiGLU FFN)
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
    layer: int = -1  # hidden-state index to cache; -1 = last (after the final norm)
    max_tokens_per_batch: int = 65536  # teacher tokens per forward batch, padding included
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class MaskConfig:
    ratio: float = 0.15  # fraction of 6-mer teacher tokens masked (stage 1)
    views: int = 1  # independent mask draws per window
    reverse_complement: bool = False  # add a reverse-complement view for every mask view
    teacher_input: str = "masked"  # masked | full: what the teacher sees at masked tokens
    seed: int = 0


@dataclass
class CacheConfig:
    path: str = "cache"  # cache directory or fsspec URL (s3://, gs://, memory://)
    shard_windows: int = 256  # window-views per shard (one shard = one task = one write)
    feature_dtype: str = "fp16"  # fp16 | bf16 | int8 (per-token absmax scale)
    compression_level: int = 1  # zstd level
    workers: int = 0  # local Dask workers; 0 = one per visible GPU, or 1 on CPU
    scheduler: str | None = None  # address of an existing Dask scheduler
    overwrite: bool = False  # replace a cache written with a different config


@dataclass
class TrainConfig:
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
    device: str = "auto"


@dataclass
class EvalConfig:
    model: str = ""  # had save_pretrained dir, or any HF encoder (hub id / dir)
    data_root: str = ""  # benchmark root folder
    benchmark: str = "nt"  # nt | gb | gue
    tasks: list[str] = field(default_factory=list)  # empty = every task under data_root
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


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_config(name_or_path: str | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Build a RunConfig from a preset name or YAML path, then apply dotted overrides.

    Overrides whose value is None are skipped, so CLI options left unset keep the preset's value.
    """
    raw: dict[str, Any] = {}
    if name_or_path:
        raw = _read_yaml(_resolve(name_or_path))
    cfg = from_dict(raw, source=str(name_or_path))
    for key, value in (overrides or {}).items():
        if value is not None:
            set_value(cfg, key, value)
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
        kwargs[name] = _build_section(sections[name].default_factory, body or {}, f"{source}: {name}")
    return RunConfig(**kwargs)


def set_value(cfg: RunConfig, dotted: str, value: Any) -> None:
    """Set `section.key` on cfg, type-checked against the section's dataclass."""
    section, _, key = dotted.partition(".")
    if not key or not hasattr(cfg, section):
        raise ConfigError(f"override '{dotted}': expected <section>.<key>")
    target = getattr(cfg, section)
    if section == "student":
        target[key] = value
        return
    names = {f.name for f in dataclasses.fields(target)}
    if key not in names:
        raise ConfigError(f"unknown key '{key}' in section '{section}'{_suggest(key, names)}")
    setattr(target, key, value)


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-able object (dataclass, dict, ...)."""
    import hashlib

    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    blob = json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _build_section(factory, body: dict[str, Any], where: str):
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(body).__name__}")
    section = factory()
    names = {f.name for f in dataclasses.fields(section)}
    for key, value in body.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown key '{key}'{_suggest(key, names)}")
        if isinstance(getattr(section, key), tuple) and isinstance(value, list):
            value = tuple(value)
        setattr(section, key, value)
    return section


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
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
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

"""A resumable sweep of fine-tuning runs over tasks x learning rates x seeds (or of linear-probe
runs over tasks x seeds, `eval.protocol: probe`).

The plan is every (task, lr, seed); runs already in `<out>/results.parquet` for the same
model, benchmark and NT version are reused, so re-running a crashed or interrupted sweep
only does the missing runs. Runs of the same model path made from other weights (a model
retrained in place: its fingerprint differs) or with another protocol are refused, never
mixed. Each finished run is appended at once (atomically). Runs go in-process, or onto Dask
workers (`eval.workers` local worker processes, each pinned to one GPU when there are GPUs,
or an existing scheduler at `eval.scheduler`); only this process writes the results file.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from had.cluster import dask_client
from had.config import EvalConfig
from had.data.benchmarks import discover_tasks, load_task
from had.errors import HadError
from had.evaluation.backbones import Backbone, load_backbone
from had.evaluation.finetune import Protocol, finetune, prepare
from had.evaluation.probe import TaskFeatures, probe, task_features
from had.evaluation.results import append_results, read_results, run_key
from had.runtime import resolve_device
from had.teacher import absolute_local


@dataclass(frozen=True)
class Sweep:
    """What one `had eval` sweep runs: everything a worker needs, picklable."""

    model: str
    fingerprint: str  # of the model's config and weights, taken once per sweep (Backbone.fingerprint)
    trust_remote_code: bool
    benchmark: str
    data_root: str
    nt_version: str | None  # None unless benchmark == "nt"
    protocol: Protocol
    device: str

    @classmethod
    def from_config(cls, cfg: EvalConfig) -> Sweep:
        if not cfg.model:
            raise HadError("eval.model is not set: pass --model (a `had train` model/ dir or an HF model)")
        fingerprint = _backbone(cfg.model, cfg.trust_remote_code).fingerprint
        return cls(cfg.model, fingerprint, cfg.trust_remote_code, cfg.benchmark, cfg.data_root,
                   cfg.nt_version if cfg.benchmark == "nt" else None,
                   Protocol.from_eval_config(cfg, cfg.benchmark), cfg.device)

    def row(self, result: dict) -> dict:
        return {"model": self.model, "model_fingerprint": self.fingerprint, "benchmark": self.benchmark,
                "nt_version": self.nt_version, **result,
                "protocol": json.dumps(dataclasses.asdict(self.protocol), sort_keys=True)}


def plan(cfg: EvalConfig) -> list[tuple[str, float, int]]:
    """Every (task, lr, seed) of the sweep, tasks in order."""
    found = discover_tasks(cfg.benchmark, cfg.data_root)
    unknown = [t for t in cfg.tasks if t not in found]
    if unknown:
        raise HadError(f"eval.tasks: no task {unknown} under {cfg.data_root} (tasks found: {', '.join(found)})")
    tasks = cfg.tasks or found
    lrs = [None] if cfg.protocol == "probe" else [float(lr) for lr in cfg.lrs]  # the probe has no lr
    return [(task, lr, seed) for task in tasks for lr in lrs for seed in range(cfg.seeds)]


def run_sweep(cfg: EvalConfig, results_path: str | Path) -> list[dict]:
    """Do every run of the plan not yet in `results_path`; returns all of the sweep's rows."""
    sweep = Sweep.from_config(cfg)
    runs = plan(cfg)
    done = {run_key(r): r for r in read_results(results_path)}
    _check_resumable(sweep, done.values(), results_path)
    todo = [(t, lr, s) for t, lr, s in runs if _key(sweep, t, lr, s) not in done]
    if len(todo) < len(runs):
        print(f"had eval: {len(runs) - len(todo)} finished runs reused from {results_path} "
              f"(same model weights and protocol), {len(todo)} to do", flush=True)
    with tqdm(total=len(runs), initial=len(runs) - len(todo), desc=f"eval {sweep.benchmark}", unit="run") as bar:
        spread = cfg.workers or cfg.scheduler
        for result in _run_dask(sweep, todo, cfg.workers, cfg.scheduler) if spread else _run_local(sweep, todo):
            row = sweep.row(result)
            append_results(results_path, [row])
            done[run_key(row)] = row
            bar.set_postfix(task=row["task"], test=f"{row['test_metric']:.3f}")
            bar.update()
    return [done[_key(sweep, *run)] for run in runs]


def _key(sweep: Sweep, task: str, lr: float, seed: int) -> tuple:
    return (sweep.model, sweep.benchmark, sweep.nt_version, task, lr, seed)


def _check_resumable(sweep: Sweep, rows, path) -> None:
    """Results of one model path must all come from the same weights, and on one benchmark from the
    same protocol: refused rather than redone, so that no file ever mixes two models under one name."""
    ours = dataclasses.asdict(sweep.protocol)
    defaults = {f.name: f.default for f in dataclasses.fields(Protocol) if f.default is not dataclasses.MISSING}
    for row in rows:
        if row["model"] == sweep.model and row["model_fingerprint"] != sweep.fingerprint:
            was = row["model_fingerprint"][:12] if row["model_fingerprint"] else "not recorded"
            raise HadError(f"{path} holds runs of {sweep.model} made from other weights (model fingerprint "
                           f"{was}, now {sweep.fingerprint[:12]}): the model changed since; use another --out "
                           f"(eval.out) for this one")
        if (row["model"], row["benchmark"], row["nt_version"]) != (sweep.model, sweep.benchmark, sweep.nt_version):
            continue
        theirs = {**defaults, **json.loads(row["protocol"])}  # a field added since: its default
        diff = [f"{k}={theirs.get(k)} (now {v})" for k, v in ours.items() if theirs.get(k) != v]
        if diff:
            raise HadError(f"{path} holds runs of {sweep.model} on {sweep.benchmark} made with "
                           f"{', '.join(diff)}: use another --out, or the same settings to resume")


def _run_local(sweep: Sweep, todo):
    device = resolve_device(sweep.device, "eval.device")
    for task, lr, seed in todo:
        yield _run_one(sweep, task, lr, seed, device)


def _run_dask(sweep: Sweep, todo, workers: int, scheduler: str | None):
    from dask.distributed import as_completed

    # A worker of an existing cluster runs in its own directory; results keep the model as the user named it.
    remote = dataclasses.replace(sweep, model=absolute_local(sweep.model), data_root=absolute_local(sweep.data_root))
    with dask_client(scheduler, workers, kept="finished runs are kept") as (client, _):
        futures = [client.submit(_run_remote, remote, task, lr, seed, pure=False) for task, lr, seed in todo]
        for future in as_completed(futures):
            yield future.result()


def _run_remote(sweep: Sweep, task: str, lr: float, seed: int) -> dict:
    """Runs on a Dask worker; worker i of a local cluster takes GPU i mod n_gpus."""
    from dask.distributed import get_worker

    device = resolve_device(sweep.device, "eval.device")
    if device.type == "cuda" and str(get_worker().name).isdigit():
        device = torch.device("cuda", int(get_worker().name) % torch.cuda.device_count())
    return _run_one(sweep, task, lr, seed, device)


def _run_one(sweep: Sweep, task: str, lr: float | None, seed: int, device: torch.device) -> dict:
    if sweep.protocol.kind == "probe":
        return probe(_features(sweep, task, device), seed, sweep.protocol.val_fraction)
    backbone = _backbone(sweep.model, sweep.trust_remote_code)
    return {**finetune(backbone, _prepared(sweep, task), lr, seed, sweep.protocol, device), "probe_c": None}


# Per process (the driver or a Dask worker): one backbone, the last few tasks tokenized for it
# (a worker may get runs of several tasks in turn).
@functools.lru_cache(maxsize=1)
def _backbone(model: str, trust_remote_code: bool) -> Backbone:
    return load_backbone(model, trust_remote_code)


@functools.lru_cache(maxsize=4)
def _prepared(sweep: Sweep, task: str):
    data = load_task(sweep.benchmark, sweep.data_root, task, sweep.nt_version or "revised")
    return prepare(data, _backbone(sweep.model, sweep.trust_remote_code), sweep.protocol)


@functools.lru_cache(maxsize=1)
def _features(sweep: Sweep, task: str, device: torch.device) -> TaskFeatures:
    """The probe's features of a task: one encoder pass per task, shared by its seeds."""
    backbone = _backbone(sweep.model, sweep.trust_remote_code)
    return task_features(backbone, _prepared(sweep, task), sweep.protocol.batch_size, device)

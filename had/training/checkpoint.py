"""Training checkpoints: `<out>/checkpoints/step-N/` (state.pt + config.yaml), written atomically,
the last `keep` kept, and the run identity a `--resume` must match before anything is loaded.

state.pt holds `model`, `optimizer`, `scheduler` (state dicts), `step`, `samples_seen`, `rng` (torch,
numpy, python, cuda), `student` (HadConfig.own_dict()) and `run` (`run_identity`).
"""
from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from had.config import RunConfig, changes, config_hash
from had.errors import HadError
from had.student.configuration_had import LEGACY_SWITCHES, HadConfig

# Manifest keys that do not decide the cached values (FORMAT.md): a cache moved, or rebuilt with the
# same settings, is the same training data.
_NOT_CACHE_IDENTITY = ("format_version", "created", "sources", "shards", "totals")
# Settings that may change on --resume: they decide how a run is carried out, not what it computes
# (every other genome, mask, train and student value must equal the checkpoint's run).
RESUME_MAY_CHANGE = (
    "train.out",  # the run's folder, which may have been moved or copied
    "train.resume",  # the flag itself
    "train.num_workers",  # loader processes: the data order is a function of (seed, step) alone
    "train.log_every",  # how often metrics are written, not what is trained
    "train.checkpoint_every",  # when checkpoints are written ...
    "train.keep_checkpoints",  # ... and how many are kept
    "train.device",  # a run may continue on another machine
    "train.compile",  # the same model, compiled or eager
    "genome.fasta",  # paths as typed (relative, moved): what they hold is in the cache's identity
    "genome.bed",
    "train.tensorboard",  # an extra copy of the metrics
)


def run_identity(cfg: RunConfig, manifest: dict) -> dict:
    """What a resumed run must share with its checkpoint's: the data (a hash per key of the cache's
    identity) and every genome, mask, train and student setting but `RESUME_MAY_CHANGE`, by dotted
    key, as plain JSON values (a tuple and the list it was read back as compare equal).

    `cfg.student` is the resolved student (HadConfig.own_dict())."""
    settings = {f"{section}.{k}": v for section in ("genome", "mask", "train")
                for k, v in dataclasses.asdict(getattr(cfg, section)).items()}
    settings |= {f"student.{k}": v for k, v in cfg.student.items()}
    run = json.loads(json.dumps({k: v for k, v in settings.items() if k not in RESUME_MAY_CHANGE}))
    return {"cache": {k: config_hash(v) for k, v in manifest.items() if k not in _NOT_CACHE_IDENTITY}, **run}


class Checkpointer:
    """The checkpoints of one run: `root` = <out>/checkpoints, `cfg` its resolved RunConfig (student
    section = HadConfig.own_dict()), `identity` its `run_identity`."""

    def __init__(self, root: Path, cfg: RunConfig, identity: dict):
        self.root, self.cfg, self.identity = root, cfg, identity

    def latest(self) -> Path | None:
        found = _checkpoints(self.root)
        return found[-1] if found else None

    def restore(self, model, optimizer, scheduler, device: torch.device) -> int:
        """Load the latest checkpoint into the run's objects and return its step (0 when there is none).

        Refused unless train.resume is set and the checkpoint belongs to this run; every check passes
        before anything is loaded or anything in the run directory is rewritten."""
        latest = self.latest()
        if latest is not None and not self.cfg.train.resume:
            raise HadError(f"{self.root.parent} already holds checkpoints ({latest.name}); pass --resume to "
                           f"continue it or choose another --out")
        return 0 if latest is None else load(latest, model, optimizer, scheduler, self.identity, device)

    def save(self, step: int, model, optimizer, scheduler) -> Path:
        """Write step-N/, then drop all but the last train.keep_checkpoints."""
        path = self.root / f"step-{step}"
        write(path, model, optimizer, scheduler, step, self.cfg, self.identity)
        for old in _checkpoints(self.root)[: -max(self.cfg.train.keep_checkpoints, 1)]:
            shutil.rmtree(old)
        return path


def write(path: Path, model, optimizer, scheduler, step: int, cfg: RunConfig, identity: dict) -> None:
    """Write step-N/ atomically (tmp dir + rename) so a kill never leaves a half checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
           "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "step": step, "samples_seen": step * cfg.train.batch_size, "rng": rng,
                "student": cfg.student, "run": identity}, tmp / "state.pt")
    cfg.save(tmp / "config.yaml")
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def load(path: Path, model, optimizer, scheduler, identity: dict, device: torch.device) -> int:
    """Restore a checkpoint of the same run (`check_same_run`) and the RNG states; return its step."""
    state = torch.load(path / "state.pt", map_location=device, weights_only=False)
    saved = state.get("run")
    if saved is not None:  # checkpoints of a had that recorded fewer settings kept the student's apart
        saved = {**json.loads(json.dumps({f"student.{k}": v for k, v in state["student"].items()})), **saved}
        saved = _as_objective(saved)
    check_same_run(path, saved, identity)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    print(f"had train: resumed from {path} (step {state['step']})", flush=True)
    return state["step"]


def check_same_run(path: Path, saved: dict | None, identity: dict) -> None:
    """--resume continues one run exactly: the same cache and settings (`run_identity`), or a HadError
    naming each difference. A setting the checkpoint did not record (an older had) is not compared."""
    if saved is None:
        raise HadError(f"--resume: {path} was written by a had that did not record the run's cache, seed and "
                       f"batch sizes, so they cannot be checked; start the run again in another --out")
    recorded = [k for k in identity if k != "cache" and k in saved]
    diff = changes({k: saved[k] for k in recorded}, {k: identity[k] for k in recorded})
    cache = sorted(k for k in saved["cache"].keys() | identity["cache"].keys()
                   if saved["cache"].get(k) != identity["cache"].get(k))
    if cache:
        diff.insert(0, f"another cache (its {', '.join(cache)} differ)")
    if diff:
        raise HadError(f"--resume: {path} belongs to a run with {'; '.join(diff)}: resume with the original "
                       f"settings or choose another --out")


def _checkpoints(root: Path) -> list[Path]:
    found = [p for p in root.glob("step-*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def _as_objective(saved: dict) -> dict:
    """A run recorded before HadConfig.objective names it by the old switches: as its objective."""
    old = {key: saved.pop(f"student.{key}") for key in LEGACY_SWITCHES if f"student.{key}" in saved}
    return {**saved, "student.objective": HadConfig.from_kwargs(old).objective} if old else saved

"""The optimizer steps of `had train`: processes and device, precision, stop signals, and `Loop`,
whose `run` takes steps until the last, logging, checking the loss and saving checkpoints on the way.

DDP (torchrun's environment): every rank runs the loop on its share of each global batch; rank 0
logs and checkpoints. SIGINT / SIGTERM finish the current step, save a checkpoint and exit.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

from had.config import TrainConfig
from had.errors import HadError
from had.runtime import resolve_device
from had.training.checkpoint import Checkpointer
from had.training.metrics import LOSS_KEYS, MetricsLogger, Window
from had.training.sampler import batches


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(use_cuda: bool) -> Dist:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if use_cuda else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)  # before init, or every rank's NCCL communicator lands on GPU 0
    dist.init_process_group(backend)
    return Dist(dist.get_rank(), local_rank, dist.get_world_size())


def device(option: str, dd: Dist) -> torch.device:
    """train.device by had.runtime's rule; auto and cuda take GPU LOCAL_RANK (each DDP rank its own)."""
    if dd.world > 1 and option.startswith("cuda:"):
        raise HadError(f"train.device={option}: under torchrun each rank takes the GPU of its LOCAL_RANK; "
                       f"use auto or cuda")
    device = resolve_device(option, "train.device")
    if device.type == "cpu":
        return device
    device = torch.device("cuda", dd.local_rank if device.index is None else device.index)
    torch.cuda.set_device(device)
    return device


def wrap(model: torch.nn.Module, compile: bool, dd: Dist, device: torch.device) -> torch.nn.Module:
    """What runs forward: `model`, compiled on request, in DDP across ranks."""
    net = torch.compile(model) if compile else model
    if dd.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    return net


def accumulation(tc: TrainConfig, dd: Dist) -> int:
    """Micro-batches per optimizer step on each rank."""
    per_step = tc.micro_batch_size * dd.world
    if tc.batch_size % per_step:
        raise HadError(f"train.batch_size {tc.batch_size} is not a multiple of train.micro_batch_size "
                       f"{tc.micro_batch_size} x {dd.world} rank(s)")
    return tc.batch_size // per_step


@dataclass
class Loop:
    """One run's training objects. `model` is what is saved; `net` what runs forward (the model,
    compiled and/or DDP-wrapped); `loader` yields the micro-batches of steps [start, tc.steps)."""

    tc: TrainConfig
    dd: Dist
    device: torch.device
    model: torch.nn.Module
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: torch.utils.data.DataLoader
    accum: int
    precision: AbstractContextManager  # autocast or nothing
    loss_keys: tuple[str, ...]  # the losses this student computes (metrics.loss_keys)
    checkpointer: Checkpointer
    logger: MetricsLogger | None  # rank 0 only

    def run(self, start: int) -> None:
        """Steps start+1 .. tc.steps; a log line every tc.log_every, a checkpoint every
        tc.checkpoint_every and at the end; a signal ends the run after a checkpoint of its step."""
        tc, dd = self.tc, self.dd
        window = Window()
        # First step (1-based) whose loss was not finite, tc.steps + 1 while none: kept on the device and
        # read only where the loop synchronises anyway (logging, checkpoints), not once per step.
        bad_step = torch.full((), tc.steps + 1, device=self.device)
        with _StopSignals() as stop, batches(self.loader) as stream:
            for step in range(start, tc.steps):
                sums, grad_norm, lr = self.step(stream, window)
                bad_step = torch.where(torch.isfinite(sums[0]), bad_step, bad_step.clamp(max=step + 1))

                done = step + 1
                log_now = done % tc.log_every == 0 or done == tc.steps
                save_now = done % tc.checkpoint_every == 0 or done == tc.steps
                stopping = done < tc.steps and stop.agreed(dd, log_now, self.device)
                if log_now or save_now or stopping:  # never log or save past a non-finite loss
                    self._check_finite(bad_step)
                if log_now:
                    if dd.world > 1:
                        dist.all_reduce(sums, op=dist.ReduceOp.AVG)
                    if self.logger:
                        losses = dict(zip(LOSS_KEYS, sums.tolist()))
                        record = {"step": done, **{k: losses[k] for k in self.loss_keys}, "lr": lr,
                                  "grad_norm": float(grad_norm), **window.rates()}
                        self.logger.log(record, tc.steps)
                    window = Window()
                if dd.main and (save_now or stopping):
                    self.checkpointer.save(done, self.model, self.optimizer, self.scheduler)
                if stopping:
                    self._exit_interrupted(stop.signum, done)

    def step(self, stream, window: Window) -> tuple[torch.Tensor, torch.Tensor, float]:
        """One optimizer step over `accum` micro-batches of `stream`: (mean of each LOSS_KEYS over the
        micro-batches [len(LOSS_KEYS)], the gradient norm before clipping, the step's learning rate)."""
        sums = torch.zeros(len(LOSS_KEYS), device=self.device)
        for micro in range(self.accum):
            t0 = time.perf_counter()
            batch = next(stream)
            window.wait += time.perf_counter() - t0
            window.nt += int(batch["attention_mask"].sum()) * self.dd.world
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            sync = nullcontext() if self.dd.world == 1 or micro == self.accum - 1 else self.net.no_sync()
            with sync, self.precision:
                res = self.net(**batch)
                (res.loss / self.accum).backward()
            sums += torch.stack([getattr(res, k).detach().float() if getattr(res, k) is not None
                                 else torch.zeros((), device=self.device) for k in LOSS_KEYS]) / self.accum
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return sums, grad_norm, lr

    def _check_finite(self, bad_step: torch.Tensor) -> None:
        """Stop at the first non-finite loss (all ranks alike): every checkpoint saved so far is before it."""
        if self.dd.world > 1:
            dist.all_reduce(bad_step, op=dist.ReduceOp.MIN)
        first = int(bad_step)
        if first <= self.tc.steps:
            last = self.checkpointer.latest()
            raise HadError(f"training loss is not finite (NaN or inf) at step {first}; stopped, last good "
                           f"checkpoint: {last if last else 'none'} (try a lower train.lr, or check the cache "
                           f"with `had cache-info`)")

    def _exit_interrupted(self, signum: int, step: int) -> None:
        if self.logger:
            self.logger.close()
        if self.dd.main:
            print(f"had train: stopped by {signal.Signals(signum).name} after step {step}, checkpoint "
                  f"{self.checkpointer.root / f'step-{step}'}; to continue, run the same command with --resume",
                  file=sys.stderr, flush=True)
        if self.dd.world > 1:
            dist.destroy_process_group()
        raise SystemExit(128 + signum)


class _StopSignals:
    """SIGINT / SIGTERM ask the loop to stop after the current step (a second signal stops at once).

    Set only from the main thread (Python allows no other); the previous handlers come back on exit.
    """

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)
                              if signal.getsignal(s) is not signal.SIG_IGN}  # e.g. `nohup`: keep ignoring
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # asked twice: do not wait for the step to end
            previous = self._previous[signum]
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            signal.raise_signal(signum)
        self.signum = signum

    def agreed(self, dd: Dist, at_log: bool, device: torch.device) -> bool:
        """Whether every rank stops after this step. DDP ranks agree at log steps only, where they
        synchronise anyway: a signal may reach the ranks during different steps."""
        if dd.world == 1:
            return self.signum is not None
        if not at_log:
            return False
        flag = torch.tensor(self.signum or 0, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        self.signum = int(flag) or None
        return self.signum is not None

"""Training metrics: `<out>/metrics.jsonl` (one JSON object per logged step), a progress line on
stdout, TensorBoard on request; throughput accounting between two log lines."""
from __future__ import annotations

import json
import time
from pathlib import Path

from had.errors import HadError
from had.student import HadConfig

LOSS_KEYS = ("loss", "loss_distill", "loss_recon", "loss_mlm")


def loss_keys(model_cfg: HadConfig) -> tuple[str, ...]:
    """The LOSS_KEYS the student computes (the others are logged by no line)."""
    has = {"loss": True, "loss_distill": model_cfg.has_distill, "loss_recon": model_cfg.has_recon,
           "loss_mlm": model_cfg.has_mlm}
    return tuple(k for k in LOSS_KEYS if has[k])


class MetricsLogger:
    """JSONL always (one object per line), a progress line on stdout, TensorBoard on request."""

    def __init__(self, out: Path, tensorboard: bool):
        self.file = (out / "metrics.jsonl").open("a")
        self.t0 = time.perf_counter()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise HadError("train.tensorboard: the tensorboard package is not installed "
                               "(pip install tensorboard) or turn the option off") from None
            self.tb = SummaryWriter(str(out / "tensorboard"))

    def log(self, record: dict, steps: int) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb:
            for k, v in record.items():
                if k != "step":
                    self.tb.add_scalar(k, v, record["step"])
        branches = " ".join(f"{k.removeprefix('loss_')} {record[k]:.4f}" for k in LOSS_KEYS[1:] if k in record)
        print(f"step {record['step']}/{steps} loss {record['loss']:.4f} ({branches}) lr {record['lr']:.2e} "
              f"gnorm {record['grad_norm']:.3f} {record['nt_per_s']:,.0f} nt/s wait {record['data_wait']:.1%} "
              f"[{time.perf_counter() - self.t0:.0f}s]", flush=True)

    def close(self) -> None:
        self.file.close()
        if self.tb:
            self.tb.close()


class Window:
    """Throughput and data-wait accounting between two log lines."""

    def __init__(self):
        self.t0, self.wait, self.nt = time.perf_counter(), 0.0, 0

    def rates(self) -> dict:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        return {"nt_per_s": self.nt / elapsed, "data_wait": self.wait / elapsed}


def truncate_metrics(path: Path, step: int) -> None:
    """On resume drop lines logged after the checkpoint, so metrics.jsonl reads as one clean run.

    From step 0 (no checkpoint to continue) the file of an earlier attempt is kept aside, not emptied.
    """
    if not path.exists():
        return
    if step == 0:
        if path.stat().st_size:
            aside = next(p for k in range(1, 1 << 20) if not (p := path.with_name(f"metrics.old-{k}.jsonl")).exists())
            path.rename(aside)
            print(f"had train: {path} (an earlier attempt that left no checkpoint) kept as {aside.name}", flush=True)
        return
    lines = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in lines))

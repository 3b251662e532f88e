"""The training loop of one stage, and the cross-cutting parts around it as small callbacks:
progress bar, JSONL log, TensorBoard, checkpoints. The NaN guard and the interrupt flag live in
the loop itself because they decide whether it goes on.

The loop knows nothing of any objective: it runs the batch ``objective.views`` times, sums the
loss components the objective returns, and hands every component and metric to the callbacks.
"""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import Text2TokenError
from ..objectives import Objective


@dataclass
class StepRecord:
    """What one optimizer step produced. Tensors stay on the device until a callback reads them."""

    stage: str
    step: int
    loss: float
    components: dict[str, torch.Tensor]
    metrics: dict[str, torch.Tensor]
    lr: float
    grad_norm: torch.Tensor | None
    started: float  # perf_counter() at the start of the step
    tokens: int  # real tokens of the global batch

    def as_dict(self) -> dict:
        """The JSON record (host values; reading the tensors syncs)."""
        out = {"stage": self.stage, "step": self.step, "loss": self.loss}
        out.update({f"loss/{k}": float(v) for k, v in self.components.items()})
        out.update(lr=self.lr, grad_norm=float(self.grad_norm) if self.grad_norm is not None else None,
                   seconds=round(time.perf_counter() - self.started, 3), tokens=self.tokens)
        out.update({k: round(float(v), 4) for k, v in self.metrics.items()})
        return out


class Callback:
    def on_step(self, record: StepRecord, interrupted: bool) -> None:
        pass

    def close(self) -> None:
        pass


class ProgressBar(Callback):
    def __init__(self, title: str, steps: int, start_step: int, enabled: bool):
        from ..progress import progress_bar

        self.bar = progress_bar(total=steps, initial=start_step, desc=title, disable=not enabled)

    def on_step(self, record, interrupted):
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{record.loss:.4f}")

    def close(self):
        self.bar.close()


class JsonlLog(Callback):
    """Every ``every`` steps and at the last step: one JSON line with every component and metric."""

    def __init__(self, path: Path, every: int, last_step: int, tensorboard=None):
        self.path, self.every, self.last_step, self.tensorboard = path, every, last_step, tensorboard

    def on_step(self, record, interrupted):
        if record.step % self.every and record.step != self.last_step:
            return
        row = record.as_dict()
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.tensorboard is not None:
            for key, value in row.items():
                if key not in ("stage", "step") and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(f"{record.stage}/{key}", value, record.step)

    def close(self):
        if self.tensorboard is not None:
            self.tensorboard.close()


class Checkpointer(Callback):
    """A checkpoint every ``every`` steps (0: never in between), at the last step, and when interrupted — only of
    finite weights: an update that made them non-finite (a finite loss, then a blown-up step) stops the run and
    keeps the previous checkpoint. ``save`` is None on processes that do not write (the check runs on all)."""

    def __init__(self, save, every: int, last_step: int, params: list, where: str, checkpoint_dir: Path):
        self.save, self.every, self.last_step = save, every, last_step
        self.params, self.where, self.checkpoint_dir = params, where, checkpoint_dir

    def on_step(self, record, interrupted):
        if interrupted or record.step == self.last_step or (self.every and record.step % self.every == 0):
            if not all(bool(torch.isfinite(p).all()) for p in self.params):
                raise Text2TokenError(f"weights became non-finite at {self.where} step {record.step}; the last good "
                                      f"checkpoint is kept in {self.checkpoint_dir}. Try a lower learning rate or "
                                      "training.grad_clip > 0")
            if self.save is not None:
                self.save(record.step)


class InterruptFlag:
    """Turns SIGINT/SIGTERM into a flag so the loop can checkpoint and stop cleanly; a second signal stops at once."""

    def __init__(self):
        self.hit = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


@dataclass
class Trainee:
    """What the loop updates: the model (and its DDP-wrapped twin), optimizer, scheduler, the trainable tensors."""

    model: torch.nn.Module  # the Text2TokenModel (for the LM head and the objective)
    wrapped: torch.nn.Module  # what accelerate prepared (DDP on several processes)
    optimizer: object
    scheduler: object
    params: list = field(default_factory=list)
    grad_clip: float = 0.0


def optimizer_step(t: Trainee, accelerator, objective: Objective, batch, where: str, checkpoint_dir: Path | None = None):
    """Forward the batch's views, backward the summed loss, stop on a non-finite loss (before any update), clip,
    step. Returns ``(loss value, objective output, grad norm)``."""
    objective.attach_targets(batch, t.model)  # e.g. frozen-model targets: their forward ends before ours starts
    n = objective.views
    inputs = [batch.input_ids, batch.attention_mask, batch.position_ids, batch.segment_ids]
    if n > 1:
        inputs = [torch.cat([x] * n) if x is not None else None for x in inputs]
    with accelerator.autocast():  # all views in one forward: one DDP forward per backward
        pooled = t.wrapped(*inputs)
    out = objective(list(pooled.chunk(n)) if n > 1 else [pooled], batch, t.model)
    loss = out.loss
    accelerator.backward(loss)
    loss_value = accelerator.reduce(loss.detach(), reduction="mean").item()  # every process sees the same value
    if not math.isfinite(loss_value):
        kept = f" in {checkpoint_dir}" if checkpoint_dir is not None else ""
        raise Text2TokenError(f"loss is {loss_value} at {where}; the last good checkpoint is kept{kept}. "
                              "Try a lower learning rate or training.mixed_precision=no")
    grad_norm = accelerator.clip_grad_norm_(t.params, t.grad_clip) if t.grad_clip > 0 else None
    t.optimizer.step()
    t.scheduler.step()
    t.optimizer.zero_grad(set_to_none=True)
    return loss_value, out, grad_norm


def train_loop(trainee: Trainee, accelerator, objective: Objective, schedule, collate, stage_key: str, title: str,
               start_step: int, steps: int, callbacks: list[Callback], checkpoint_dir: Path | None = None) -> None:
    """Steps ``start_step+1 … steps``: each process takes its slice of the step's global batch."""
    world, rank, device = accelerator.num_processes, accelerator.process_index, accelerator.device
    try:
        with InterruptFlag() as interrupt:
            for step in range(start_step + 1, steps + 1):
                started = time.perf_counter()
                batch = collate(schedule[step - 1][rank::world])
                tokens = batch.num_tokens * world
                loss, out, grad_norm = optimizer_step(trainee, accelerator, objective, batch.to(device),
                                                      f"{title} step {step}", checkpoint_dir)
                components = {k: v.detach() for k, v in out.losses.items()}
                record = StepRecord(stage_key, step, loss, components, out.metrics, trainee.scheduler.get_last_lr()[0],
                                    grad_norm, started, tokens)
                for cb in callbacks:
                    cb.on_step(record, interrupt.hit)
                if interrupt.hit:
                    raise KeyboardInterrupt(f"interrupted at {title} step {step}; checkpoint saved, continue with --resume")
    finally:
        for cb in callbacks:
            cb.close()

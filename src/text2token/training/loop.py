"""The training loop of one stage, and the cross-cutting parts around it as small callbacks:
progress bar, JSONL log, TensorBoard, checkpoints. The NaN guard and the interrupt flag live in
the loop itself because they decide whether it goes on.

The loop knows nothing of any objective: it runs the batch ``objective.views`` times, sums the
loss components the objective returns, and hands every component and metric to the callbacks.

Host syncs: on a GPU the step itself never waits for the device. The loss stays a device tensor; a
non-finite loss makes the fused optimizer skip that update on the device (``found_inf``, the mechanism
``torch.amp.GradScaler`` uses) and is counted there; the count is read every ``check_every`` steps (and at
the last step), which stops the run. Callbacks read values only when they log. The next batches are
tokenized and collated in a background thread while the device computes (:class:`Prefetcher`).
"""

from __future__ import annotations

import json
import math
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import Text2TokenError
from ..objectives import Objective
from ..progress import progress_bar


@dataclass
class StepRecord:
    """What one optimizer step produced. Tensors stay on the device until a callback reads them."""

    stage: str
    step: int
    loss: torch.Tensor  # 0-d, on the device: reading it syncs
    components: dict[str, torch.Tensor]
    metrics: dict[str, torch.Tensor]
    lr: float
    grad_norm: torch.Tensor | None
    started: float  # perf_counter() at the start of the step
    tokens: int  # real tokens of the global batch
    loop_started: float = 0.0  # perf_counter() when the stage's loop began

    def as_dict(self) -> dict:
        """The JSON record (host values; reading the tensors waits for the device). ``seconds`` is this step's host
        time — on a GPU the host runs ahead, so use ``elapsed_s`` (since the loop began, taken after the values
        were read, so every step up to this one has finished) for steady-state step times between two lines."""
        out = {"stage": self.stage, "step": self.step, "loss": float(self.loss)}
        out.update({f"loss/{k}": float(v) for k, v in self.components.items()})
        out.update(lr=self.lr, grad_norm=float(self.grad_norm) if self.grad_norm is not None else None)
        out.update({k: round(float(v), 4) for k, v in self.metrics.items()})
        now = time.perf_counter()
        out.update(
            seconds=round(now - self.started, 3), elapsed_s=round(now - self.loop_started, 3), tokens=self.tokens
        )
        return out


class Callback:
    def on_step(self, record: StepRecord, interrupted: bool) -> None:
        pass

    def close(self) -> None:
        pass


class ProgressBar(Callback):
    """Steps done, with the loss refreshed at most once a second (reading it waits for the device)."""

    def __init__(self, title: str, steps: int, start_step: int, enabled: bool):

        self.bar = progress_bar(total=steps, initial=start_step, desc=title, disable=not enabled)
        self.enabled, self.shown = enabled, 0.0

    def on_step(self, record, interrupted):
        self.bar.update(1)
        if self.enabled and time.perf_counter() - self.shown >= 1.0:
            self.bar.set_postfix(loss=f"{float(record.loss):.4f}")
            self.shown = time.perf_counter()

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
                raise Text2TokenError(
                    f"weights became non-finite at {self.where} step {record.step}; the last good "
                    f"checkpoint is kept in {self.checkpoint_dir}. Try a lower learning rate or "
                    "training.grad_clip > 0"
                )
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
    # 1: check the loss on the host every step (free on a CPU). > 1: the device skips a non-finite step's update
    # itself (needs a fused torch optimizer) and the host reads the count of such steps this often.
    check_every: int = 1
    nonfinite: torch.Tensor | None = None  # device count of skipped steps since the last check

    def raw_optimizer(self):
        return getattr(self.optimizer, "optimizer", self.optimizer)  # under accelerate's wrapper


def _nonfinite_error(what: str, where: str, checkpoint_dir: Path | None) -> Text2TokenError:
    kept = f" in {checkpoint_dir}" if checkpoint_dir is not None else ""
    return Text2TokenError(
        f"loss is {what} at {where}; the last good checkpoint is kept{kept}. "
        "Try a lower learning rate or training.mixed_precision=no"
    )


def optimizer_step(
    t: Trainee, accelerator, objective: Objective, batch, where: str, checkpoint_dir: Path | None = None
):
    """Forward the batch's views, backward the summed loss, clip, step — never updating the weights from a
    non-finite loss: with ``check_every == 1`` it stops here (a host read), otherwise the update is skipped on
    the device and counted. Returns ``(loss, objective output, grad norm)``, tensors on the device."""
    objective.attach_targets(batch, t.model)  # e.g. frozen-model targets: their forward ends before ours starts
    n = objective.views
    inputs = [batch.input_ids, batch.attention_mask, batch.position_ids, batch.segment_ids]
    if n > 1:
        inputs = [torch.cat([x] * n) if x is not None else None for x in inputs]
    packed = {"num_segments": n * len(batch.rows)} if batch.segment_ids is not None else {}
    extra = {"return_hidden": True} if objective.token_level else packed
    with accelerator.autocast():  # all views in one forward: one DDP forward per backward
        pooled = t.wrapped(*inputs, **extra)
    out = objective(list(pooled.chunk(n)) if n > 1 else [pooled], batch, t.model)
    loss = out.loss
    accelerator.backward(loss)
    mean_loss = accelerator.reduce(loss.detach(), reduction="mean")  # every process sees the same value
    if t.check_every == 1:
        if not math.isfinite(value := mean_loss.item()):
            raise _nonfinite_error(str(value), where, checkpoint_dir)
    else:
        found_inf = (~torch.isfinite(mean_loss)).float()
        t.raw_optimizer().found_inf = found_inf  # fused AdamW: no update (and no step count) where it is 1
        t.nonfinite = found_inf if t.nonfinite is None else t.nonfinite + found_inf
    grad_norm = accelerator.clip_grad_norm_(t.params, t.grad_clip) if t.grad_clip > 0 else None
    t.optimizer.step()
    t.scheduler.step()
    t.optimizer.zero_grad(set_to_none=True)
    return mean_loss, out, grad_norm


def check_skipped_steps(t: Trainee, where: str, checkpoint_dir: Path | None) -> None:
    """With deferred checks: stop if any step since the last check had a non-finite loss (its update was skipped,
    so the weights are still those of the last good step)."""
    if t.nonfinite is not None and (count := int(t.nonfinite.item())):
        raise _nonfinite_error(f"non-finite in {count} step(s)", f"{where} or earlier", checkpoint_dir)


class Prefetcher:
    """Yields ``make(i)`` for ``i`` in ``items``, computed ``depth`` ahead in one background thread (tokenizing and
    collating the next batches while the device runs this one). Deterministic: the same order and values as a plain
    loop. An error in the thread is raised in the consumer at that item."""

    def __init__(self, make, items, depth: int = 2):
        self._make, self._items = make, list(items)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="text2token-prefetch", daemon=True)

    def _run(self):
        for item in self._items:
            try:
                result = (True, self._make(item))
            except BaseException as exc:  # handed to the consumer
                result = (False, exc)
            while not self._stop.is_set():
                try:
                    self._queue.put(result, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self._stop.is_set() or not result[0]:
                return

    def __iter__(self):
        self._thread.start()
        try:
            for _ in self._items:
                ok, value = self._queue.get()
                if not ok:
                    raise value
                yield value
        finally:
            self.close()

    def close(self):
        self._stop.set()


def train_loop(
    trainee: Trainee,
    accelerator,
    objective: Objective,
    schedule,
    collate,
    stage_key: str,
    title: str,
    start_step: int,
    steps: int,
    callbacks: list[Callback],
    checkpoint_dir: Path | None = None,
) -> None:
    """Steps ``start_step+1 … steps``: each process takes its slice of the step's global batch."""
    world, rank, device = accelerator.num_processes, accelerator.process_index, accelerator.device
    pin = device.type == "cuda"

    def make(step):
        batch = collate(schedule[step - 1][rank::world])
        return batch.pin_memory() if pin else batch

    batches = Prefetcher(make, range(start_step + 1, steps + 1))
    loop_started = time.perf_counter()
    try:
        with InterruptFlag() as interrupt:
            for step, batch in zip(range(start_step + 1, steps + 1), batches):
                started = time.perf_counter()
                tokens = batch.num_tokens * world
                where = f"{title} step {step}"
                loss, out, grad_norm = optimizer_step(
                    trainee, accelerator, objective, batch.to(device), where, checkpoint_dir
                )
                if trainee.check_every > 1 and (step % trainee.check_every == 0 or step == steps or interrupt.hit):
                    check_skipped_steps(trainee, where, checkpoint_dir)
                components = {k: v.detach() for k, v in out.losses.items()}
                record = StepRecord(
                    stage_key,
                    step,
                    loss,
                    components,
                    out.metrics,
                    trainee.scheduler.get_last_lr()[0],
                    grad_norm,
                    started,
                    tokens,
                    loop_started,
                )
                for cb in callbacks:
                    cb.on_step(record, interrupt.hit)
                if interrupt.hit:
                    raise KeyboardInterrupt(
                        f"interrupted at {title} step {step}; checkpoint saved, continue with --resume"
                    )
    finally:
        batches.close()
        for cb in callbacks:
            cb.close()

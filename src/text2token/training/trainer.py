"""Stage-1 Text2Token training on accelerate: LoRA on the backbone, KL(q‖p) between sparse
data-driven targets and softmax(lm_head(pooled)).

The same code runs on CPU, one GPU, or ``accelerate launch`` on many processes: each
process takes its slice of every global batch, DDP averages the gradients.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import get_scheduler

from ..errors import ConfigError, Text2TokenError
from ..model import Text2TokenModel
from ..objectives import sparse_kl_loss
from ..pooling import default_template
from ..targets import DataDrivenTargetBuilder, SparseTargets
from ..textio import read_texts_counted, write_json_atomic
from .config import RunConfig

logger = logging.getLogger(__name__)
BUNDLED_CORPUS = Path(__file__).resolve().parent.parent / "data" / "corpus" / "brown_sentences.txt"


def corpus_path(config: RunConfig) -> Path:
    return Path(config.data.train_file) if config.data.train_file else BUNDLED_CORPUS


def load_training_texts(config: RunConfig) -> tuple[list[str], dict]:
    """Read, shuffle (seeded) and cap the training texts; report what was skipped."""
    path = corpus_path(config)
    texts, blank = read_texts_counted(path, field=config.data.field, skip_blank=True)
    digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]
    order = np.random.default_rng(config.training.seed).permutation(len(texts))
    if config.data.max_texts:
        order = order[: config.data.max_texts]
    return [texts[i] for i in order], {"file": str(path), "sha256_16": digest, "lines": len(texts), "blank_lines_skipped": blank}


def batch_schedule(n: int, batch_size: int, steps: int, seed: int, lengths: np.ndarray) -> list[np.ndarray]:
    """Deterministic global batches for every step: shuffled epochs, length-bucketed.

    Within windows of 16 batches, texts are sorted by length before being cut into
    batches (less padding); the batch order is then shuffled again.
    """
    if n < batch_size:
        raise Text2TokenError(f"only {n} training texts with targets, fewer than one batch of {batch_size}")
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    while len(out) < steps:
        perm = rng.permutation(n)
        usable = (n // batch_size) * batch_size
        window = 16 * batch_size
        batches = []
        for start in range(0, usable, window):
            chunk = perm[start : min(start + window, usable)]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
        for j in rng.permutation(len(batches)):
            out.append(batches[j])
    return out[:steps]


class _Interrupt:
    """Turns SIGINT/SIGTERM into a flag so the loop can checkpoint and stop cleanly."""

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
        if self.hit:  # second signal: give up at once
            raise KeyboardInterrupt
        self.hit = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(out_dir: Path, step: int, model, optimizer, scheduler, keep: int) -> Path:
    """Write checkpoint-<step> atomically (tmp folder → rename) and prune old ones."""
    ckpt_root = out_dir / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"checkpoint-{step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=ckpt_root))
    try:
        save_file(_trainable_state(model), str(tmp / "adapter.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state()}, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "time": time.time()}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for old in sorted(p for p in ckpt_root.glob("checkpoint-*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: Path) -> Path | None:
    ckpts = sorted(p for p in (out_dir / "checkpoints").glob("checkpoint-*") if (p / "state.json").is_file())
    return ckpts[-1] if ckpts else None


def load_checkpoint(path: Path, model, optimizer, scheduler) -> int:
    state = load_file(str(path / "adapter.safetensors"))
    params = dict(model.named_parameters())
    missing = [n for n in params if params[n].requires_grad and n not in state]
    if missing:
        raise Text2TokenError(f"{path}: checkpoint does not match this model/config (missing {missing[0]})")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))
    extra = torch.load(path / "optimizer.pt", weights_only=False)
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["rng"])
    return json.loads((path / "state.json").read_text())["step"]


def _truncate_log(path: Path, last_step: int) -> None:
    """Drop log records after the checkpoint we resume from (they will be redone)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= last_step]
    from ..textio import write_atomic

    write_atomic(path, lambda p: p.write_text("".join(k + "\n" for k in keep), encoding="utf-8"))


def _mixed_precision(setting: str) -> str:
    if setting == "auto":
        return "bf16" if torch.cuda.is_available() else "no"
    return setting


def train(config: RunConfig, resume: bool = False, show_progress_bar: bool = True) -> Path:
    """Run stage-1 training; return the folder of the merged, saved model."""
    cfg, tcfg = config, config.training
    out_dir = Path(cfg.output_dir)
    accelerator = Accelerator(mixed_precision=_mixed_precision(tcfg.mixed_precision))
    main = accelerator.is_main_process
    if main:
        if out_dir.exists() and any(out_dir.iterdir()) and not resume and latest_checkpoint(out_dir):
            raise Text2TokenError(f"{out_dir} already holds checkpoints: pass --resume to continue, or choose another --output")
        out_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(out_dir / "config.yaml")
    set_seed(tcfg.seed)

    template = default_template(cfg.model.pooling) if cfg.model.template == "auto" else cfg.model.template
    model = Text2TokenModel.from_pretrained(
        cfg.model.name, pooling=cfg.model.pooling, attention=cfg.model.attention, template=template,
        max_length=tcfg.max_length, device=accelerator.device, dtype=torch.float32,
    )

    texts, corpus_info = load_training_texts(cfg)
    builder = DataDrivenTargetBuilder(model.tokenizer, max_length=cfg.data.target_max_length)
    fingerprint = {**builder.fingerprint(), "corpus": corpus_info["sha256_16"], "seed": tcfg.seed, "max_texts": cfg.data.max_texts}
    targets_file = out_dir / "targets_data_driven.safetensors"
    if targets_file.is_file():
        targets = SparseTargets.load(targets_file, expect_fingerprint=fingerprint)
        report = {"texts": len(texts), "kept": len(targets), "skipped_no_content": len(texts) - len(targets)}
    else:
        targets, rep = builder.build(texts, show_progress_bar=show_progress_bar and main)
        targets.fingerprint = fingerprint
        report = rep.as_dict()
        if main:
            targets.save(targets_file)
    if main:
        write_json_atomic(out_dir / "data_report.json", {**corpus_info, "targets": report})
        logger.info("targets: %s", report)

    # LoRA on the backbone (peft injects the adapters in place; everything else is frozen).
    available = {n.rsplit(".", 1)[-1] for n, _ in model.backbone.named_modules()}
    unknown = [m for m in cfg.lora.target_modules if m not in available]
    if unknown:
        raise ConfigError(f"config field 'lora.target_modules': {unknown} not found in the model; linear layers include "
                          + ", ".join(sorted(n for n in available if n.endswith("proj"))[:12]))
    peft_model = get_peft_model(model.backbone, PeftLoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules), bias="none"))
    if tcfg.gradient_checkpointing:
        model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.backbone.enable_input_require_grads()
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    optimizer = torch.optim.AdamW(trainable, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    scheduler = get_scheduler(tcfg.scheduler if tcfg.scheduler != "constant" else "constant_with_warmup",
                              optimizer, num_warmup_steps=tcfg.warmup_steps, num_training_steps=tcfg.steps)

    start_step = 0
    if resume:
        ckpt = latest_checkpoint(out_dir)
        if ckpt is not None:
            start_step = load_checkpoint(ckpt, model, optimizer, scheduler)
            if main:
                logger.info("resumed from %s (step %d)", ckpt, start_step)
                _truncate_log(out_dir / "train_log.jsonl", start_step)
    model.train()
    ddp_model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    lengths = np.array([len(texts[i]) for i in targets.text_index])
    schedule = batch_schedule(len(targets), tcfg.batch_size, tcfg.steps, tcfg.seed, lengths)
    world, rank = accelerator.num_processes, accelerator.process_index
    log_path = out_dir / "train_log.jsonl"
    bar = tqdm(total=tcfg.steps, initial=start_step, desc="stage 1 (data-driven)", disable=not (show_progress_bar and main))
    t_start = time.perf_counter()
    step = start_step
    with _Interrupt() as interrupt:
        for step in range(start_step + 1, tcfg.steps + 1):
            rows = schedule[step - 1][rank::world]
            t0 = time.perf_counter()
            enc = model.tokenize([texts[targets.text_index[r]] for r in rows])
            ids, weights = targets.batch(rows)
            dev = accelerator.device
            with accelerator.autocast():
                pooled = ddp_model(enc["input_ids"].to(dev), enc["attention_mask"].to(dev))
            loss = sparse_kl_loss(model.vocab_logits(pooled), ids.to(dev), weights.to(dev))
            if not torch.isfinite(loss):
                raise Text2TokenError(
                    f"loss is {loss.item()} at step {step}; the last good checkpoint is kept in {out_dir / 'checkpoints'}. "
                    "Try a lower training.lr or training.mixed_precision=no")
            accelerator.backward(loss)
            grad_norm = accelerator.clip_grad_norm_(trainable, tcfg.grad_clip) if tcfg.grad_clip > 0 else None
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_value = accelerator.reduce(loss.detach(), reduction="mean").item()
            seconds = time.perf_counter() - t0
            if main:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}")
                if step % tcfg.log_every == 0 or step == tcfg.steps:
                    record = {"stage": "data", "step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0],
                              "grad_norm": float(grad_norm) if grad_norm is not None else None,
                              "seconds": round(seconds, 3), "tokens": int(enc["attention_mask"].sum()) * world}
                    with open(log_path, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(record) + "\n")
            last = step == tcfg.steps
            if main and (interrupt.hit or (tcfg.save_every and step % tcfg.save_every == 0 and not last)):
                save_checkpoint(out_dir, step, model, optimizer, scheduler, tcfg.keep_checkpoints)
            if interrupt.hit:
                bar.close()
                accelerator.wait_for_everyone()
                raise KeyboardInterrupt(f"interrupted at step {step}; checkpoint saved, continue with --resume")
    bar.close()
    accelerator.wait_for_everyone()
    elapsed = time.perf_counter() - t_start

    model_dir = out_dir / "model"
    if main:
        merged = peft_model.merge_and_unload()
        model.backbone = merged
        model.eval()
        model.max_length = cfg.model.max_length  # training truncation differs from encoding length
        peak = _peak_memory_mb()
        summary = {"steps": tcfg.steps, "resumed_from": start_step, "trainable_parameters": n_trainable,
                   "seconds": round(elapsed, 1),
                   "seconds_per_step": round(elapsed / max(1, tcfg.steps - start_step), 2),
                   "peak_memory_mb": peak, "processes": world, "targets": report}
        model.save_pretrained(model_dir, extra={"training": {"stages": ["data"], "config": cfg.to_dict(), **summary}})
        write_json_atomic(out_dir / "train_summary.json", summary)
    accelerator.wait_for_everyone()
    return model_dir


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def load_checkpoint_model(checkpoint_dir: str | os.PathLike) -> Text2TokenModel:
    """Rebuild the merged model of a training checkpoint (``RUN/checkpoints/checkpoint-N``)."""
    from .config import load_config

    ckpt = Path(checkpoint_dir)
    run_dir = ckpt.parent.parent
    if not (ckpt / "adapter.safetensors").is_file() or not (run_dir / "config.yaml").is_file():
        raise Text2TokenError(f"{ckpt} is not a training checkpoint (needs adapter.safetensors and ../../config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    template = default_template(cfg.model.pooling) if cfg.model.template == "auto" else cfg.model.template
    model = Text2TokenModel.from_pretrained(cfg.model.name, pooling=cfg.model.pooling, attention=cfg.model.attention,
                                            template=template, max_length=cfg.model.max_length, device="cpu",
                                            dtype=torch.float32)
    peft_model = get_peft_model(model.backbone, PeftLoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules), bias="none"))
    state = load_file(str(ckpt / "adapter.safetensors"))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            if name not in params:
                raise Text2TokenError(f"{ckpt}: adapter tensor {name} does not fit the model in {run_dir / 'config.yaml'}")
            params[name].copy_(value)
    model.backbone = peft_model.merge_and_unload()
    model.eval()
    return model

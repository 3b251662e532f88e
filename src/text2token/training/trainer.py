"""Text2Token training on accelerate: per stage a fresh LoRA on the backbone, trained so that
softmax(lm_head(pooled)) matches the targets (KL(q‖p)): stage 1 data-driven (sparse), stage 2
model-derived from the frozen stage-1 network (on the fly with the adapter disabled, or
precomputed top-k).

The same code runs on CPU, one GPU, or ``accelerate launch`` on many processes: each
process takes its slice of every global batch, DDP averages the gradients.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
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

from ..backbone import cache_dir
from ..errors import ConfigError, Text2TokenError
from ..model import Text2TokenModel
from ..objectives import set_attention_dropout, simcse_loss, sparse_kl_loss
from ..pooling import default_template
from ..targets import DataDrivenTargetBuilder, SparseTargets
from ..textio import atomic_directory, atomic_path, iter_texts, read_lines_at, write_json_atomic
from .config import RunConfig
from .lock import RunLock

logger = logging.getLogger(__name__)
BUNDLED_CORPUS = Path(__file__).resolve().parent.parent / "data" / "corpus" / "brown_sentences.txt"


def corpus_path(config: RunConfig) -> Path:
    return Path(config.data.train_file) if config.data.train_file else BUNDLED_CORPUS


def read_corpus(path: Path, field: str, seed: int, limit: int | None, errors: str = "strict") -> tuple[list[str], dict]:
    """Read a corpus (blank lines skipped and counted), shuffle it with ``seed``, keep ``limit`` texts.

    Streams the file once (validating every line, hashing the texts, keeping only each line's byte
    offset), then reads just the chosen lines: memory grows with 8 bytes per line plus the texts kept,
    so a corpus larger than memory works.
    """
    counts: dict = {}
    digest = hashlib.sha256()
    offsets = []
    for i, (offset, text) in enumerate(iter_texts(path, field=field, skip_blank=True, errors=errors, counts=counts)):
        if i:
            digest.update(b"\n")
        digest.update(text.encode("utf-8"))
        offsets.append(offset)
    offsets = np.asarray(offsets, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(offsets))[:limit]
    is_jsonl = Path(path).suffix.lower() == ".jsonl"
    texts = read_lines_at(path, offsets[order], field if is_jsonl else None, errors)
    return texts, {"file": str(path), "sha256_16": digest.hexdigest()[:16], "lines": len(offsets), **counts,
                   "used": len(order)}


def load_training_texts(config: RunConfig) -> tuple[list[str], dict]:
    """The stage-1 texts: the corpus shuffled with the seed, capped at ``data.max_texts``."""
    return read_corpus(corpus_path(config), config.data.field, config.training.seed, config.data.max_texts,
                       config.data.errors)


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


CHECKPOINT_FILES = ("adapter.safetensors", "optimizer.pt", "state.json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(out_dir: Path, step: int, model, optimizer, scheduler, keep: int) -> Path:
    """Write checkpoint-<step> atomically (tmp folder → rename) with a manifest of checksums, and
    prune old ones. A crash at any moment leaves every earlier checkpoint intact."""
    ckpt_root = out_dir / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    for stale in ckpt_root.glob(".tmp-*"):  # left by a process killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    final = ckpt_root / f"checkpoint-{step:07d}"
    with atomic_directory(final) as tmp:
        save_file(_trainable_state(model), str(tmp / "adapter.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state()}, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "time": time.time()}))
        manifest = {"step": step, "files": {f: {"sha256": _sha256(tmp / f), "bytes": (tmp / f).stat().st_size}
                                            for f in CHECKPOINT_FILES}}
        for f in CHECKPOINT_FILES:  # on disk before the rename makes the checkpoint visible
            with open(tmp / f, "rb+") as fh:
                os.fsync(fh.fileno())
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    for old in sorted(p for p in ckpt_root.glob("checkpoint-*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def verify_checkpoint(path: Path) -> str | None:
    """None if every file of the checkpoint matches its manifest checksum, else what is wrong."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return "manifest.json missing or unreadable"
    for name, meta in manifest.get("files", {}).items():
        f = path / name
        if not f.is_file():
            return f"{name} missing"
        if f.stat().st_size != meta["bytes"] or _sha256(f) != meta["sha256"]:
            return f"{name} does not match its checksum"
    return None


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest checkpoint whose files match their manifest; damaged newer ones are skipped (with a warning)."""
    for ckpt in sorted((p for p in (out_dir / "checkpoints").glob("checkpoint-*") if p.is_dir()), reverse=True):
        problem = verify_checkpoint(ckpt)
        if problem is None:
            return ckpt
        logger.warning("skipping damaged checkpoint %s: %s", ckpt, problem)
    return None


def load_checkpoint(path: Path, model, optimizer, scheduler) -> int:
    _apply_adapter(model, load_file(str(path / "adapter.safetensors")), path)
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


def topk_hit_rate(logits: torch.Tensor, target_ids: torch.Tensor, valid: torch.Tensor) -> float:
    """Mean over texts of |top-n predicted tokens ∩ target tokens| / n, where n is the text's number of
    target tokens (``valid`` marks real entries of the padded ``target_ids``)."""
    n = valid.sum(dim=1)
    k = int(n.max())
    top = logits.topk(k, dim=-1).indices  # B×k, best first
    in_top = (top.unsqueeze(2) == target_ids.unsqueeze(1)).any(dim=2)  # B×k: predicted token is a target
    ranks = torch.arange(k, device=logits.device).unsqueeze(0)
    hits = (in_top & (ranks < n.unsqueeze(1))).sum(dim=1)
    return round(float((hits / n.clamp_min(1)).mean()), 4)


def _mixed_precision(setting: str) -> str:
    if setting == "auto":
        return "bf16" if torch.cuda.is_available() else "no"
    return setting


STAGE_DIRS = {"data": "stage1-data", "model": "stage2-model", "simcse": "simcse"}


def _template(cfg: RunConfig):
    return default_template(cfg.model.pooling) if cfg.model.template == "auto" else cfg.model.template


def _lora(cfg: RunConfig, backbone):
    available = {n.rsplit(".", 1)[-1] for n, _ in backbone.named_modules()}
    unknown = [m for m in cfg.lora.target_modules if m not in available]
    if unknown:
        raise ConfigError(f"config field 'lora.target_modules': {unknown} not found in the model; linear layers include "
                          + ", ".join(sorted(n for n in available if n.endswith("proj"))[:12]))
    return get_peft_model(backbone, PeftLoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules), bias="none"))


def _apply_adapter(model, state: dict[str, torch.Tensor], where) -> None:
    """Copy saved adapter tensors into the model's trainable (LoRA) parameters; they must match exactly."""
    params = dict(model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    if set(state) != trainable:
        odd = sorted(set(state) ^ trainable)
        raise Text2TokenError(f"{where}: adapter does not fit this model/config (e.g. {odd[0]})")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))


def train(config: RunConfig, resume: bool = False, show_progress_bar: bool = True) -> Path:
    """Run the configured stages (``data`` → merge → ``model``); return the saved model folder.

    Each stage trains a fresh LoRA, which is merged into the backbone when the stage ends.
    Stage folders (``stage1-data/``, ``stage2-model/``) hold logs, checkpoints and the final
    adapter, so ``resume`` skips finished stages and continues an unfinished one.
    """
    cfg = config
    out_dir = Path(cfg.output_dir)
    # Several processes on a machine without CUDA (e.g. `accelerate launch --multi_gpu` or torchrun on CPUs):
    # accelerate sets up gloo (MULTI_CPU) only when asked for the CPU explicitly.
    cpu_distributed = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    accelerator = Accelerator(mixed_precision=_mixed_precision(cfg.training.mixed_precision), cpu=cpu_distributed)
    main = accelerator.is_main_process
    lock = RunLock(out_dir)
    if main:
        lock.acquire()  # a second run on this folder refuses; a dead owner's lock is taken over
    try:
        return _train_locked(cfg, accelerator, out_dir, resume, show_progress_bar)
    finally:
        lock.release()


def _train_locked(cfg: RunConfig, accelerator, out_dir: Path, resume: bool, show_progress_bar: bool) -> Path:
    main = accelerator.is_main_process
    if main:
        has_ckpt = any(latest_checkpoint(out_dir / d) for d in STAGE_DIRS.values()) if out_dir.exists() else False
        if has_ckpt and not resume:
            raise Text2TokenError(f"{out_dir} already holds checkpoints: pass --resume to continue, or choose another --output")
        out_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(out_dir / "config.yaml")
        from .report import environment_info

        write_json_atomic(out_dir / "run_info.json", environment_info())
    accelerator.wait_for_everyone()
    set_seed(cfg.training.seed)
    model = Text2TokenModel.from_pretrained(
        cfg.model.name, pooling=cfg.model.pooling, attention=cfg.model.attention, template=_template(cfg),
        max_length=cfg.training.max_length, device=accelerator.device, dtype=torch.float32,
    )
    summaries = {}
    t_start = time.perf_counter()
    for stage in cfg.run_stages():
        summaries[stage] = _run_stage(stage, cfg, model, accelerator, out_dir / STAGE_DIRS[stage], resume, show_progress_bar)
    elapsed = time.perf_counter() - t_start

    model_dir = out_dir / "model"
    if main:
        model.eval()
        model.max_length = cfg.model.max_length  # training truncation differs from encoding length
        summary = {"objective": cfg.objective, "stages": cfg.run_stages(), "steps": sum(s["steps"] for s in summaries.values()),
                   "seconds": round(elapsed, 1), "peak_memory_mb": _peak_memory_mb(),
                   "processes": accelerator.num_processes, **{f"stage_{k}": v for k, v in summaries.items()}}
        model.save_pretrained(model_dir, extra={"training": {"config": cfg.to_dict(), **summary}})
        write_json_atomic(out_dir / "train_summary.json", summary)
        from .report import plot_training_curves

        plot_training_curves(out_dir)
    accelerator.wait_for_everyone()
    return model_dir


def _stage_texts(stage: str, cfg: RunConfig) -> tuple[list[str], dict]:
    if stage in ("data", "simcse"):
        return load_training_texts(cfg)
    s2 = cfg.stage2
    path = Path(s2.train_file) if s2.train_file else corpus_path(cfg)
    return read_corpus(path, cfg.data.field, cfg.training.seed + 1, s2.max_texts or s2.steps * cfg.training.batch_size,
                       cfg.data.errors)


def _run_stage(stage, cfg: RunConfig, model: Text2TokenModel, accelerator, stage_dir: Path, resume, show_progress_bar):
    """Train one stage with a fresh LoRA, then merge it into ``model.backbone``."""
    from ..objectives import dense_kl_loss
    from ..targets.model_derived import corpus_prior, model_derived_targets, model_fingerprint

    tcfg = cfg.training
    steps, lr = (cfg.stage2.steps, cfg.stage2.lr) if stage == "model" else (tcfg.steps, tcfg.lr)
    main = accelerator.is_main_process
    frozen_fp = model_fingerprint(model.backbone)
    if main:
        _claim_stage_dir(stage_dir, frozen_fp, first=stage == cfg.run_stages()[0])
    accelerator.wait_for_everyone()
    texts, corpus_info = _stage_texts(stage, cfg)

    # ---- targets
    targets = prior = None
    report: dict = {}
    if stage == "data":
        builder = DataDrivenTargetBuilder(model.tokenizer, max_length=cfg.data.target_max_length)
        fingerprint = {**builder.fingerprint(), "corpus": corpus_info["sha256_16"], "seed": tcfg.seed,
                       "max_texts": cfg.data.max_texts}
        targets_file = stage_dir / "targets.safetensors"
        if targets_file.is_file():
            targets = SparseTargets.load(targets_file, expect_fingerprint=fingerprint)
            report = {"texts": len(texts), "kept": len(targets), "skipped_no_content": len(texts) - len(targets)}
        else:
            num_proc = cfg.data.num_proc or (min(os.cpu_count() or 1, 8) if len(texts) > 50_000 else 1)
            targets, rep = builder.build(texts, show_progress_bar=show_progress_bar and main, num_proc=num_proc)
            targets.fingerprint = fingerprint
            report = rep.as_dict()
            if main:
                targets.save(targets_file)
        rows_text = targets.text_index
    elif stage == "simcse":
        rows_text = np.arange(len(texts))
        report = {"objective": "simcse", "texts": len(texts), "attention_dropout": cfg.simcse.dropout,
                  "temperature": cfg.simcse.temperature}
    else:
        prior_file = stage_dir / "prior.safetensors"
        texts_sha = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]  # the exact prior set
        fingerprint = {"model": frozen_fp, "texts_sha256_16": texts_sha, "texts": len(texts),
                       "pooling": model.pooling, "attention": model.attention, "template": model.template,
                       "max_length": model.max_length}
        key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:24]
        shared_file = cache_dir() / "priors" / f"prior-{key}.safetensors"  # reused across runs (e.g. a tau sweep)
        prior = _load_prior(prior_file, fingerprint)
        if prior is None and (prior := _load_prior(shared_file, fingerprint)) is not None and main:
            _save_prior(prior_file, prior, fingerprint)
        if prior is None:
            model.eval()
            shard = texts[accelerator.process_index :: accelerator.num_processes]
            prior = corpus_prior(model, shard, batch_size=tcfg.batch_size, accelerator=accelerator,
                                 show_progress_bar=show_progress_bar and main)
            if main:
                _save_prior(prior_file, prior, fingerprint)
                _save_prior(shared_file, prior, fingerprint)
        prior = prior.to(accelerator.device)
        rows_text = np.arange(len(texts))
        if cfg.stage2.targets == "precomputed":
            targets, report = _precompute_model_targets(model, texts, prior, cfg, stage_dir, fingerprint, show_progress_bar and main)
        report.update(tau=cfg.stage2.tau, mode=cfg.stage2.targets)
    corpus_info["texts_truncated_to_max_length"] = model.count_truncated(texts)
    if main:
        write_json_atomic(stage_dir / "data_report.json", {**corpus_info, "targets": report})
        _report_input_problems(stage_dir, corpus_info, cfg.training.max_length)

    # ---- a fresh LoRA for this stage
    set_seed(tcfg.seed + (1 if stage == "model" else 0))
    old_dropout = set_attention_dropout(model.backbone, cfg.simcse.dropout) if stage == "simcse" else None
    peft_model = _lora(cfg, model.backbone)
    final_adapter = stage_dir / "adapter_final.safetensors"
    if resume and final_adapter.is_file() and _finished_steps(stage_dir) == steps:
        _apply_adapter(model, load_file(str(final_adapter)), final_adapter)  # stage already finished
        model.backbone = peft_model.merge_and_unload()
        if old_dropout is not None:
            set_attention_dropout(model.backbone, old_dropout)
        return json.loads((stage_dir / "summary.json").read_text())
    if tcfg.gradient_checkpointing:
        model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.backbone.enable_input_require_grads()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=tcfg.weight_decay,
                                  fused=accelerator.device.type == "cuda")  # one kernel for all LoRA tensors
    scheduler = get_scheduler(tcfg.scheduler if tcfg.scheduler != "constant" else "constant_with_warmup",
                              optimizer, num_warmup_steps=tcfg.warmup_steps, num_training_steps=steps)
    log_path = stage_dir / "train_log.jsonl"
    start_step = 0
    if resume and (ckpt := latest_checkpoint(stage_dir)) is not None:
        start_step = load_checkpoint(ckpt, model, optimizer, scheduler)
        if main:
            logger.info("resumed from %s (step %d)", ckpt, start_step)
            _truncate_log(log_path, start_step)
    elif main and log_path.exists():
        log_path.unlink()
    model.train()
    if tcfg.compile:
        model.trunk.compile()  # in place: parameter names (checkpoints, merge) stay the same
    ddp_model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    n = len(targets) if targets is not None else len(texts)
    lengths = np.array([len(texts[i]) for i in rows_text])
    schedule = batch_schedule(n, tcfg.batch_size, steps, tcfg.seed + (1 if stage == "model" else 0), lengths)
    world, rank, dev = accelerator.num_processes, accelerator.process_index, accelerator.device
    name = {"data": "stage 1 (data-driven)", "model": f"stage 2 (model-derived, tau={cfg.stage2.tau:g})",
            "simcse": f"SimCSE (dropout {cfg.simcse.dropout:g})"}[stage]
    bar = tqdm(total=steps, initial=start_step, desc=name, disable=not (show_progress_bar and main))
    writer = _tensorboard(cfg, stage_dir.parent, stage) if main else None
    t_start = time.perf_counter()
    with _Interrupt() as interrupt:
        for step in range(start_step + 1, steps + 1):
            rows = schedule[step - 1][rank::world]
            t0 = time.perf_counter()
            enc = model.tokenize([texts[rows_text[r]] for r in rows])
            input_ids, mask = enc["input_ids"].to(dev), enc["attention_mask"].to(dev)
            extra = {}
            if stage == "model" and targets is None:  # exact targets from the frozen network (adapter off)
                with torch.no_grad(), peft_model.disable_adapter(), accelerator.autocast():
                    q = model_derived_targets(model.vocab_logits(ddp_model(input_ids, mask)), prior, cfg.stage2.tau)
                extra["q_mass_top64"] = round(q.topk(64, dim=-1).values.sum(dim=-1).mean().item(), 4)
            if stage == "simcse":  # both dropout views in one forward pass (one DDP forward per backward)
                with accelerator.autocast():
                    pooled = ddp_model(torch.cat([input_ids, input_ids]), torch.cat([mask, mask]))
                view_a, view_b = pooled.chunk(2)
                loss = simcse_loss(view_a, view_b, cfg.simcse.temperature, gather_negatives=world > 1)
            else:
                with accelerator.autocast():
                    pooled = ddp_model(input_ids, mask)
                logits = model.vocab_logits(pooled)  # B×V only: the LM head on pooled vectors
                if targets is not None:
                    ids, weights = targets.batch(rows)
                    loss = sparse_kl_loss(logits, ids.to(dev), weights.to(dev))
                    extra["hit_rate"] = topk_hit_rate(logits.detach(), ids.to(dev), weights.to(dev) > 0)
                else:
                    loss = dense_kl_loss(logits, q)
                    top_q = q.topk(16, dim=-1).indices
                    extra["hit_rate"] = topk_hit_rate(logits.detach(), top_q, torch.ones_like(top_q, dtype=torch.bool))
            if not torch.isfinite(loss):
                bar.close()
                raise Text2TokenError(
                    f"loss is {loss.item()} at {name} step {step}; the last good checkpoint is kept in "
                    f"{stage_dir / 'checkpoints'}. Try a lower learning rate or training.mixed_precision=no")
            accelerator.backward(loss)
            grad_norm = accelerator.clip_grad_norm_(trainable, tcfg.grad_clip) if tcfg.grad_clip > 0 else None
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_value = accelerator.reduce(loss.detach(), reduction="mean").item()
            if main:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}")
                if step % tcfg.log_every == 0 or step == steps:
                    record = {"stage": stage, "step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0],
                              "grad_norm": float(grad_norm) if grad_norm is not None else None,
                              "seconds": round(time.perf_counter() - t0, 3),
                              "tokens": int(enc["attention_mask"].sum()) * world, **extra}
                    with open(log_path, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(record) + "\n")
                    if writer is not None:
                        for key in ("loss", "lr", "grad_norm", "hit_rate", "q_mass_top64"):
                            if record.get(key) is not None:
                                writer.add_scalar(f"{stage}/{key}", record[key], step)
            if main and (interrupt.hit or step == steps or (tcfg.save_every and step % tcfg.save_every == 0)):
                save_checkpoint(stage_dir, step, model, optimizer, scheduler, tcfg.keep_checkpoints)
            if interrupt.hit:
                bar.close()
                raise KeyboardInterrupt(f"interrupted at {name} step {step}; checkpoint saved, continue with --resume")
    bar.close()
    if writer is not None:
        writer.close()
    accelerator.wait_for_everyone()
    elapsed = time.perf_counter() - t_start
    summary = {"stage": stage, "steps": steps, "lr": lr, "resumed_from": start_step,
               "trainable_parameters": sum(p.numel() for p in trainable), "seconds": round(elapsed, 1),
               "seconds_per_step": round(elapsed / max(1, steps - start_step), 2), "targets": report,
               "frozen_model_fingerprint": frozen_fp}
    if main:
        with atomic_path(final_adapter, suffix=".safetensors") as tmp:
            save_file(_trainable_state(model), str(tmp))
        write_json_atomic(stage_dir / "summary.json", summary)
    model.backbone = peft_model.merge_and_unload()
    if old_dropout is not None:
        set_attention_dropout(model.backbone, old_dropout)
    model.eval()
    return summary


def _report_input_problems(stage_dir: Path, info: dict, max_length: int) -> None:
    """One warning line per kind of corpus problem that was handled rather than refused."""
    notes = []
    if info.get("blank_lines_skipped"):
        notes.append(f"{info['blank_lines_skipped']} blank lines skipped")
    if info.get("invalid_utf8_lines_replaced"):
        notes.append(f"{info['invalid_utf8_lines_replaced']} lines with invalid UTF-8 decoded with U+FFFD")
    if info.get("texts_truncated_to_max_length"):
        notes.append(f"{info['texts_truncated_to_max_length']} of {info['used']} texts truncated to "
                     f"training.max_length={max_length} tokens")
    if notes:
        logger.warning("%s: %s (counts in %s)", info["file"], "; ".join(notes), stage_dir / "data_report.json")


def _tensorboard(cfg: RunConfig, run_dir: Path, stage: str):
    if not cfg.training.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("training.tensorboard=true needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(run_dir / "tensorboard" / STAGE_DIRS[stage]))


def _claim_stage_dir(stage_dir: Path, frozen_fp: str, first: bool) -> None:
    """Record which model this stage starts from. If the first stage's folder was started from
    another model (e.g. ``model.name`` changed), refuse: its checkpoints and targets belong to that
    model. If a later stage's base changed because an earlier stage was trained further, this
    stage's checkpoints and final adapter are stale: discard them."""
    base_file = stage_dir / "base_model.json"
    if base_file.is_file():
        recorded = json.loads(base_file.read_text()).get("fingerprint")
        if recorded == frozen_fp:
            return
        if first:
            raise Text2TokenError(
                f"{stage_dir} was started from another model (weights fingerprint {recorded}, now {frozen_fp}); "
                f"its checkpoints and targets do not belong to this one: choose another --output, or delete {stage_dir}")
        logger.warning("%s was trained on top of a different model (earlier stage changed); restarting it", stage_dir)
        for name in ("checkpoints",):
            shutil.rmtree(stage_dir / name, ignore_errors=True)
        for name in ("adapter_final.safetensors", "summary.json", "train_log.jsonl", "targets.safetensors"):
            (stage_dir / name).unlink(missing_ok=True)
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(base_file, {"fingerprint": frozen_fp})


def _finished_steps(stage_dir: Path) -> int | None:
    try:
        return json.loads((stage_dir / "summary.json").read_text())["steps"]
    except (OSError, ValueError, KeyError):
        return None


def _load_prior(path: Path, fingerprint: dict) -> torch.Tensor | None:
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        stored = json.loads((fh.metadata() or {}).get("fingerprint", "{}"))
        if stored != fingerprint:
            logger.warning("%s was computed for another model/corpus/settings; recomputing", path)
            return None
        return fh.get_tensor("prior")


def _save_prior(path: Path, prior: torch.Tensor, fingerprint: dict) -> None:
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file({"prior": prior.detach().cpu().contiguous()}, str(tmp),
                  metadata={"fingerprint": json.dumps(fingerprint, sort_keys=True)})


def _precompute_model_targets(model, texts, prior, cfg: RunConfig, stage_dir: Path, fingerprint: dict, progress: bool):
    """Top-k sparse model-derived targets for every stage-2 text; reports the mass kept."""
    from ..targets.model_derived import model_derived_targets, truncate_top_k

    fp = {**fingerprint, "tau": cfg.stage2.tau, "top_k": cfg.stage2.top_k}
    path = stage_dir / "targets.safetensors"
    if path.is_file():
        try:
            targets = SparseTargets.load(path, expect_fingerprint=fp)
            return targets, {"texts": len(texts), "top_k": cfg.stage2.top_k, "mass_kept_mean": None}
        except Text2TokenError:
            logger.warning("%s was built for other settings; rebuilding", path)
    model.eval()
    ids_list: list = [None] * len(texts)
    w_list: list = [None] * len(texts)
    masses = []
    for idx, logits in model.iter_vocab_logits(texts, cfg.training.batch_size, desc="stage-2 targets",
                                               show_progress_bar=progress):
        ids, w, mass = truncate_top_k(model_derived_targets(logits, prior, cfg.stage2.tau), cfg.stage2.top_k)
        for row, i, v in zip(idx, ids.cpu().numpy(), w.cpu().numpy()):
            ids_list[row], w_list[row] = i, v
        masses.append(mass.cpu())
    targets = SparseTargets.from_lists(ids_list, w_list, np.arange(len(texts)), fp)
    targets.save(path)
    mass = torch.cat(masses)
    return targets, {"texts": len(texts), "top_k": cfg.stage2.top_k, "mass_kept_mean": round(mass.mean().item(), 4),
                     "mass_kept_min": round(mass.min().item(), 4)}


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def load_checkpoint_model(checkpoint_dir: str | os.PathLike) -> Text2TokenModel:
    """Rebuild the merged model of a training checkpoint (``RUN/stage*/checkpoints/checkpoint-N``):
    the base model, every earlier finished stage's adapter merged, then this checkpoint's adapter."""
    from .config import load_config

    ckpt = Path(checkpoint_dir)
    stage_dir = ckpt.parent.parent
    run_dir = stage_dir.parent
    if not (ckpt / "adapter.safetensors").is_file() or not (run_dir / "config.yaml").is_file():
        raise Text2TokenError(f"{ckpt} is not a training checkpoint (needs adapter.safetensors and {run_dir}/config.yaml)")
    if (problem := verify_checkpoint(ckpt)) is not None:
        raise Text2TokenError(f"{ckpt} is damaged ({problem}); use an earlier checkpoint")
    cfg = load_config(run_dir / "config.yaml")
    model = Text2TokenModel.from_pretrained(cfg.model.name, pooling=cfg.model.pooling, attention=cfg.model.attention,
                                            template=_template(cfg), max_length=cfg.model.max_length, device="cpu",
                                            dtype=torch.float32)
    for stage in cfg.run_stages():
        this = run_dir / STAGE_DIRS[stage]
        adapter = ckpt / "adapter.safetensors" if this == stage_dir else this / "adapter_final.safetensors"
        if not adapter.is_file():
            raise Text2TokenError(f"{adapter} is missing: stage '{stage}' of {run_dir} has not finished")
        peft_model = _lora(cfg, model.backbone)
        _apply_adapter(model, load_file(str(adapter)), adapter)
        model.backbone = peft_model.merge_and_unload()
        if this == stage_dir:
            break
    model.eval()
    return model

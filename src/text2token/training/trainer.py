"""Training orchestration on accelerate: per stage a fresh LoRA on the backbone, trained on the
stage's objective, merged into the backbone when the stage ends; then the model folder is saved.

The same code runs on CPU, one GPU, or ``accelerate launch`` on many processes: each process takes
its slice of every global batch, DDP averages the gradients. What a stage reads and optimises lives
in :mod:`.stages` and :mod:`..objectives`; the step loop in :mod:`.loop`; checkpoints in
:mod:`.checkpoints`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import torch

from ..errors import ConfigError, Text2TokenError
from ..fingerprint import model_fingerprint
from ..layout import MODEL_CONFIG_NAME, RUN_CONFIG_NAME, RUN_INFO_NAME, RUN_SUMMARY_NAME
from ..lock import RunLock
from ..model import Text2TokenModel, encoding_max_length
from ..objectives import set_attention_dropout
from ..pooling import default_template
from ..recipes import STAGES
from ..textio import atomic_path, write_json_atomic
from . import precision
from .batches import batch_schedule, token_budget_schedule
from .checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint, truncate_log
from .config import RunConfig, check_resumable, load_config
from .loop import Checkpointer, JsonlLog, ProgressBar, Trainee, train_loop
from .lora import attach_lora, merge_adapter, trainable_state
from .report import environment_info, plot_training_curves
from .stages import build_stages

logger = logging.getLogger(__name__)


def train(config: RunConfig, resume: bool = False, show_progress_bar: bool = True) -> Path:
    """Run the configured stages (e.g. ``data`` → merge → ``model``); return the saved model folder.

    Stage folders (``stage1-data/``, ``stage2-model/``) hold logs, checkpoints and the final
    adapter, so ``resume`` skips finished stages and continues an unfinished one.
    """
    from accelerate import Accelerator

    out_dir = Path(config.output_dir)
    # Several processes on a machine without CUDA (e.g. `accelerate launch --multi_gpu` or torchrun on CPUs):
    # accelerate sets up gloo (MULTI_CPU) only when asked for the CPU explicitly.
    cpu_distributed = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = torch.device("cuda" if torch.cuda.is_available() and not cpu_distributed else "cpu")
    mixed_precision = precision.resolve(config.training.mixed_precision, device)
    _allow_precision(mixed_precision)
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=cpu_distributed)
    lock = RunLock(out_dir)
    if accelerator.is_main_process:
        lock.acquire()  # a second run on this folder refuses; a dead owner's lock is taken over
    try:
        return _train_locked(config, accelerator, out_dir, resume, show_progress_bar)
    finally:
        lock.release()


def _allow_precision(mixed_precision: str) -> None:
    """accelerate keeps one process-wide state and refuses an ``Accelerator`` with another precision than the first
    one made in the process. ``train()`` called again in the same process (a notebook, a sweep, the tests) with
    another ``training.mixed_precision`` drops that state first; the process group (multi-process runs) is kept."""
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision", mixed_precision) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def template_of(cfg: RunConfig):
    """The prompt template a config means (``auto``: PromptEOL for last-token pooling, none otherwise)."""
    return default_template(cfg.model.pooling) if cfg.model.template == "auto" else cfg.model.template


def build_model(cfg: RunConfig, device, max_length: int | None):
    """The untrained model a run starts from (backbone, pooling, attention, template of ``cfg``), float32 on
    ``device``; ``max_length``: tokens per text (training length while training, the saved length when loading)."""
    return Text2TokenModel.from_pretrained(
        cfg.model.name,
        pooling=cfg.model.pooling,
        attention=cfg.model.attention,
        template=template_of(cfg),
        max_length=max_length,
        device=device,
        dtype=torch.float32,
    )


def _train_locked(cfg: RunConfig, accelerator, out_dir: Path, resume: bool, show_progress_bar: bool) -> Path:
    from accelerate.utils import set_seed

    main = accelerator.is_main_process
    stages = build_stages(cfg, out_dir)
    if resume and (out_dir / RUN_CONFIG_NAME).is_file():  # the same run, or refuse before writing anything
        check_resumable(load_config(out_dir / RUN_CONFIG_NAME), cfg, str(out_dir))
    if resume and is_finished(cfg):  # nothing to do: the run's record stays as it is
        logger.info("%s is already finished; nothing to do", out_dir)
        return out_dir / "model"
    if main:
        has_ckpt = out_dir.exists() and any(latest_checkpoint(out_dir / s.folder) for s in STAGES.values())
        if has_ckpt and not resume:
            raise Text2TokenError(
                f"{out_dir} already holds checkpoints: pass --resume to continue, or choose another --output"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_run_record(cfg, out_dir, resume)
    accelerator.wait_for_everyone()
    set_seed(cfg.training.seed)
    model = build_model(cfg, accelerator.device, cfg.training.max_length)
    summaries = {}
    t_start = time.perf_counter()
    for stage in stages:
        summaries[stage.key] = run_stage(stage, model, accelerator, resume, show_progress_bar, first=stage is stages[0])
    elapsed = time.perf_counter() - t_start

    model_dir = out_dir / "model"
    if main:
        model.eval()

        model.max_length = encoding_max_length(model.backbone.config, cfg.model.max_length)  # ≠ training length
        isotropy = _fit_isotropy(cfg, model, show_progress_bar)
        summary = {
            "objective": cfg.objective,
            "stages": cfg.run_stages(),
            "steps": sum(s["steps"] for s in summaries.values()),
            "seconds": round(elapsed, 1),
            "peak_memory_mb": _peak_memory_mb(),
            "mixed_precision": accelerator.mixed_precision,
            "processes": accelerator.num_processes,
            **{f"stage_{k}": v for k, v in summaries.items()},
            **({"isotropy": isotropy} if isotropy else {}),
        }
        model.save_pretrained(model_dir, extra={"training": {"config": cfg.to_dict(), **summary}})
        write_json_atomic(out_dir / RUN_SUMMARY_NAME, summary)

        plot_training_curves(out_dir)
    accelerator.wait_for_everyone()
    return model_dir


def _fit_isotropy(cfg: RunConfig, model, show_progress_bar: bool) -> dict | None:
    """The isotropy correction the config asks for, fitted on the trained model's raw vectors of a seeded sample of
    the training corpus (or ``isotropy.corpus``) and set on the model; what it records, with its fit time."""
    from ..isotropy import TooFewTexts
    from .isotropy_fit import fit_on_corpus

    iso = cfg.isotropy
    if not iso.enabled:
        return None
    t0 = time.perf_counter()
    logger.info("fitting the isotropy correction (%d texts, %d direction(s))", iso.texts, iso.directions)
    try:
        correction = fit_on_corpus(
            model,
            iso.corpus or cfg.data.train_file,
            texts=iso.texts,
            directions=iso.directions,
            seed=cfg.training.seed,
            field=cfg.data.field if not iso.corpus else "text",
            errors=cfg.data.errors if not iso.corpus else "strict",  # the training corpus is read as training read it
            batch_size=cfg.training.batch_size,
            show_progress_bar=show_progress_bar,
        )
    except TooFewTexts as exc:  # the trained model is still saved, without a correction: say so, keep the work
        logger.warning("no isotropy correction: %s; fit one later with `text2token postprocess`", exc)
        return {"skipped": str(exc)}
    return {**correction.describe(), "seconds": round(time.perf_counter() - t0, 1)}


def is_finished(cfg: RunConfig) -> bool:
    """True if every stage of ``cfg`` has finished with its configured steps and the model folder was saved."""
    out_dir = Path(cfg.output_dir)
    return (
        (out_dir / RUN_SUMMARY_NAME).is_file()
        and (out_dir / "model" / MODEL_CONFIG_NAME).is_file()
        and all(stage.finished() for stage in build_stages(cfg, out_dir))
    )


def _write_run_record(cfg: RunConfig, out_dir: Path, resume: bool) -> None:
    """``config.yaml`` and ``run_info.json``. A resumed run keeps the record: the config file is rewritten only if
    a setting it may change did (e.g. more steps), and the environment of each resume is appended to run_info."""
    config_file, info_file = out_dir / RUN_CONFIG_NAME, out_dir / RUN_INFO_NAME
    if not (resume and config_file.is_file() and load_config(config_file).to_dict() == cfg.to_dict()):
        cfg.save(config_file)
    if resume and info_file.is_file():
        info = json.loads(info_file.read_text())
        info.setdefault("resumed", []).append(environment_info())
    else:
        info = environment_info()
    write_json_atomic(info_file, info)


def run_stage(stage, model, accelerator, resume: bool, show_progress_bar: bool, first: bool) -> dict:
    """Train one stage with a fresh LoRA, then merge it into ``model.backbone``; return the stage summary."""
    tcfg, main = stage.cfg.training, accelerator.is_main_process
    progress = show_progress_bar and main
    frozen_fp = model_fingerprint(model.backbone)
    if main:
        _claim_stage_dir(stage.dir, frozen_fp, first=first)
    accelerator.wait_for_everyone()
    if resume and stage.finished():  # before any corpus read or target build
        _merge_finished(stage, model)
        return json.loads((stage.dir / "summary.json").read_text())

    bf16 = precision.BF16Backbone(model.backbone) if accelerator.mixed_precision == "bf16" else None
    collate, corpus_info, report = stage.prepare(model, accelerator, frozen_fp, progress)
    corpus_info["texts_truncated_to_max_length"] = model.count_truncated(collate.texts)
    if main:
        write_json_atomic(stage.dir / "data_report.json", {**corpus_info, "targets": report})
        _report_input_problems(stage.dir, corpus_info, tcfg.max_length)

    trainee, objective, peft_model, old_dropout = _fresh_adapter(stage, model, accelerator)
    log_path = stage.dir / "train_log.jsonl"
    start_step = 0
    if resume and (ckpt := latest_checkpoint(stage.dir)) is not None:
        start_step = load_checkpoint(ckpt, model, trainee.optimizer, trainee.scheduler)
        if main:
            logger.info("resumed from %s (step %d)", ckpt, start_step)
            truncate_log(log_path, start_step)
    elif main and log_path.exists():
        log_path.unlink()
    trainee.wrapped, trainee.optimizer, trainee.scheduler = accelerator.prepare(
        model, trainee.optimizer, trainee.scheduler
    )
    collate.fixed_shapes = tcfg.compile  # a few bucketed shapes: the compiled graph is reused
    if tcfg.tokens_per_step:  # packed batches: a token budget per step, several texts per row
        collate.pack_length = tcfg.pack_length or 2 * tcfg.max_length
        schedule = token_budget_schedule(collate.token_lengths(), tcfg.tokens_per_step, stage.steps, stage.seed)
    else:
        schedule = batch_schedule(len(collate), tcfg.batch_size, stage.steps, stage.seed, collate.lengths())
    log_every = tcfg.log_every or (25 if accelerator.device.type == "cuda" else 1)
    trainee.check_every = log_every if accelerator.device.type == "cuda" else 1  # the fused optimizer skips
    callbacks = [ProgressBar(stage.title, stage.steps, start_step, progress)]
    if main:
        callbacks.append(JsonlLog(log_path, log_every, stage.steps, _tensorboard(stage.cfg, stage)))
    save = (
        (
            lambda step: save_checkpoint(
                stage.dir,
                step,
                model,
                trainee.optimizer,
                trainee.scheduler,  # noqa: E731
                tcfg.keep_checkpoints,
            )
        )
        if main
        else None
    )
    callbacks.append(
        Checkpointer(save, tcfg.save_every, stage.steps, trainee.params, stage.title, stage.dir / "checkpoints")
    )
    t_start = time.perf_counter()
    train_loop(
        trainee,
        accelerator,
        objective,
        schedule,
        collate,
        stage.key,
        stage.title,
        start_step,
        stage.steps,
        callbacks,
        checkpoint_dir=stage.dir / "checkpoints",
    )
    accelerator.wait_for_everyone()
    elapsed = time.perf_counter() - t_start
    summary = {
        "stage": stage.key,
        "steps": stage.steps,
        "lr": stage.lr,
        "objective": objective.describe(),
        "resumed_from": start_step,
        "trainable_parameters": sum(p.numel() for p in trainee.params),
        "seconds": round(elapsed, 1),
        "seconds_per_step": round(elapsed / max(1, stage.steps - start_step), 2),
        "targets": report,
        "frozen_model_fingerprint": frozen_fp,
    }
    _finish_stage(stage, model, peft_model, old_dropout, summary, main, bf16)
    return summary


def _fresh_adapter(stage, model, accelerator):
    """A fresh LoRA (seeded per stage), the stage's objective and its attention dropout, AdamW and the scheduler."""
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    tcfg = stage.cfg.training
    set_seed(stage.seed)
    peft_model = attach_lora(stage.cfg.lora, model.backbone)
    objective = stage.objective(peft_model, accelerator)
    old_dropout = None
    if objective.attention_dropout is not None:
        old_dropout = set_attention_dropout(model.backbone, objective.attention_dropout)
    if tcfg.gradient_checkpointing:
        backbone, kwargs = model.backbone, {"use_reentrant": False}
        if hasattr(backbone, "activation_checkpointing_enable"):  # transformers >= 5.x's name
            backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        model.backbone.enable_input_require_grads()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=stage.lr, weight_decay=tcfg.weight_decay, fused=accelerator.device.type == "cuda"
    )  # one kernel for all LoRA tensors
    scheduler = get_scheduler(
        tcfg.scheduler if tcfg.scheduler != "constant" else "constant_with_warmup",
        optimizer,
        num_warmup_steps=tcfg.warmup_steps,
        num_training_steps=stage.steps,
    )
    model.train()
    if tcfg.compile:
        model.trunk.compile()  # in place: parameter names (checkpoints, merge) stay the same
    return Trainee(model, model, optimizer, scheduler, params, tcfg.grad_clip), objective, peft_model, old_dropout


def _finish_stage(stage, model, peft_model, old_dropout, summary: dict, main: bool, bf16=None) -> None:
    """Save the final adapter and the summary, merge the adapter into the backbone (into the fp32 weights when the
    stage ran on a bf16 copy), restore the dropout."""
    from safetensors.torch import save_file

    if main:
        with atomic_path(stage.final_adapter, suffix=".safetensors") as tmp:
            save_file(trainable_state(model), str(tmp))
        write_json_atomic(stage.dir / "summary.json", summary)
    model.backbone = bf16.merge(peft_model) if bf16 is not None else peft_model.merge_and_unload()
    if old_dropout is not None:
        set_attention_dropout(model.backbone, old_dropout)
    model.eval()


def _merge_finished(stage, model) -> None:
    """A finished stage: its final adapter merged into the backbone, as at the end of its training."""
    merge_adapter(model, stage.cfg.lora, stage.final_adapter)


def _report_input_problems(stage_dir: Path, info: dict, max_length: int) -> None:
    """One warning line per kind of corpus problem that was handled rather than refused."""
    notes = []
    if info.get("blank_lines_skipped"):
        notes.append(f"{info['blank_lines_skipped']} blank lines skipped")
    if info.get("invalid_utf8_lines_replaced"):
        notes.append(f"{info['invalid_utf8_lines_replaced']} lines with invalid UTF-8 decoded with U+FFFD")
    if info.get("texts_truncated_to_max_length"):
        notes.append(
            f"{info['texts_truncated_to_max_length']} of {info['used']} texts truncated to "
            f"training.max_length={max_length} tokens"
        )
    if notes:
        logger.warning("%s: %s (counts in %s)", info["file"], "; ".join(notes), stage_dir / "data_report.json")


def _tensorboard(cfg: RunConfig, stage):
    if not cfg.training.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("training.tensorboard=true needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(stage.dir.parent / "tensorboard" / stage.dir.name))


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
                f"its checkpoints and targets do not belong to this one: choose another --output, or delete {stage_dir}"
            )
        logger.warning("%s was trained on top of a different model (earlier stage changed); restarting it", stage_dir)
        shutil.rmtree(stage_dir / "checkpoints", ignore_errors=True)
        for name in ("adapter_final.safetensors", "summary.json", "train_log.jsonl", "targets.safetensors"):
            (stage_dir / name).unlink(missing_ok=True)
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(base_file, {"fingerprint": frozen_fp})


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB

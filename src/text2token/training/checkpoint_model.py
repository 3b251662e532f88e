"""Load a training checkpoint as a model (``--model RUN/stage*/checkpoints/checkpoint-N``): the run's
base model, every earlier finished stage's adapter merged, then this checkpoint's adapter."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import Text2TokenError
from ..layout import RUN_CONFIG_NAME
from ..recipes import STAGES


def is_checkpoint(path: str | os.PathLike) -> bool:
    return (Path(path) / "adapter.safetensors").is_file()


def load_checkpoint_model(checkpoint_dir: str | os.PathLike):
    from .checkpoints import verify_checkpoint
    from .config import load_config
    from .lora import merge_adapter
    from .trainer import build_model

    ckpt = Path(checkpoint_dir)
    stage_dir = ckpt.parent.parent
    run_dir = stage_dir.parent
    if not is_checkpoint(ckpt) or not (run_dir / RUN_CONFIG_NAME).is_file():
        raise Text2TokenError(
            f"{ckpt} is not a training checkpoint (needs adapter.safetensors and {run_dir / RUN_CONFIG_NAME})"
        )
    if (problem := verify_checkpoint(ckpt)) is not None:
        raise Text2TokenError(f"{ckpt} is damaged ({problem}); use an earlier checkpoint")
    cfg = load_config(run_dir / RUN_CONFIG_NAME)
    model = build_model(cfg, "cpu", cfg.model.max_length)
    for stage in cfg.run_stages():
        this = run_dir / STAGES[stage].folder
        adapter = ckpt / "adapter.safetensors" if this == stage_dir else this / "adapter_final.safetensors"
        if not adapter.is_file():
            raise Text2TokenError(f"{adapter} is missing: stage '{stage}' of {run_dir} has not finished")
        merge_adapter(model, cfg.lora, adapter)
        if this == stage_dir:
            break
    model.eval()
    return model


def load_run_adapters(run_dir: str | os.PathLike):
    """A finished run rebuilt from what it kept of its training: its ``config.yaml`` and each stage's
    ``adapter_final.safetensors`` (any dtype), merged in order into the recorded backbone — how a study keeps a trained
    model in a few MB and scores it again later. The rebuilt model carries no isotropy correction (fit one on it)."""
    from .config import load_config
    from .lora import merge_adapter
    from .trainer import build_model

    run_dir = Path(run_dir)
    if not (run_dir / RUN_CONFIG_NAME).is_file():
        raise Text2TokenError(f"{run_dir} holds no {RUN_CONFIG_NAME}: not a run folder")
    cfg = load_config(run_dir / RUN_CONFIG_NAME)
    model = build_model(cfg, "cpu", cfg.model.max_length)
    for stage in cfg.run_stages():
        adapter = run_dir / STAGES[stage].folder / "adapter_final.safetensors"
        if not adapter.is_file():
            raise Text2TokenError(f"{adapter} is missing: stage '{stage}' of {run_dir} has not finished")
        merge_adapter(model, cfg.lora, adapter)
    return model.eval()

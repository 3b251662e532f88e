"""Training checkpoints: written atomically with a manifest of checksums, verified when read,
restoring the adapter, optimizer, scheduler and the CPU and CUDA random states.

A checkpoint is ``STAGE_DIR/checkpoints/checkpoint-<step>/`` holding ``adapter.safetensors``,
``optimizer.pt`` (optimizer, scheduler, RNG states), ``state.json`` and ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import torch

from ..errors import Text2TokenError
from ..textio import atomic_directory, write_atomic
from .lora import apply_adapter, trainable_state

logger = logging.getLogger(__name__)
CHECKPOINT_FILES = ("adapter.safetensors", "optimizer.pt", "state.json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def rng_states() -> dict:
    """The random states a resumed run needs to continue bitwise: CPU, and every CUDA device's."""
    states = {"rng": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda_rng"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(saved: dict) -> None:
    torch.set_rng_state(saved["rng"])
    cuda = saved.get("cuda_rng")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            logger.warning(
                "checkpoint has CUDA random states for %d devices, this machine has %d: dropout after "
                "resume will not repeat the interrupted run's",
                len(cuda),
                torch.cuda.device_count(),
            )


def save_checkpoint(stage_dir: Path, step: int, model, optimizer, scheduler, keep: int) -> Path:
    """Write checkpoint-<step> atomically (tmp folder → rename) with a manifest of checksums, and
    prune old ones. A crash at any moment leaves every earlier checkpoint intact."""
    ckpt_root = stage_dir / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    for stale in ckpt_root.glob(".tmp-*"):  # left by a process killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    final = ckpt_root / f"checkpoint-{step:07d}"
    from safetensors.torch import save_file

    with atomic_directory(final) as tmp:
        save_file(trainable_state(model), str(tmp / "adapter.safetensors"))
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **rng_states()},
            tmp / "optimizer.pt",
        )
        (tmp / "state.json").write_text(json.dumps({"step": step, "time": time.time()}))
        manifest = {
            "step": step,
            "files": {f: {"sha256": _sha256(tmp / f), "bytes": (tmp / f).stat().st_size} for f in CHECKPOINT_FILES},
        }
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


def latest_checkpoint(stage_dir: Path) -> Path | None:
    """The newest checkpoint whose files match their manifest; damaged newer ones are skipped (with a warning)."""
    for ckpt in sorted((p for p in (stage_dir / "checkpoints").glob("checkpoint-*") if p.is_dir()), reverse=True):
        problem = verify_checkpoint(ckpt)
        if problem is None:
            return ckpt
        logger.warning("skipping damaged checkpoint %s: %s", ckpt, problem)
    return None


def load_checkpoint(path: Path, model, optimizer, scheduler) -> int:
    """Restore adapter, optimizer, scheduler and random states from ``path``; return its step."""
    from safetensors.torch import load_file

    extra = load_training_state(path / "optimizer.pt")  # first: nothing is applied from a refused checkpoint
    apply_adapter(model, load_file(str(path / "adapter.safetensors")), path)
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    restore_rng_states(extra)
    return json.loads((path / "state.json").read_text())["step"]


def load_training_state(path: Path) -> dict:
    """The optimizer, scheduler and RNG states of a checkpoint, loaded with ``weights_only=True``: tensors and plain
    Python values only, so a checkpoint from someone else cannot run code when resumed (a pickle that would is
    refused with one line)."""
    import pickle

    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise Text2TokenError(
            f"{path} holds objects a safe load refuses ({str(exc).splitlines()[0][:160]}); it was not "
            "written by text2token, or by a version that stored more than tensors and numbers: "
            "resume from another checkpoint, or start the run again"
        ) from None


def truncate_log(path: Path, last_step: int) -> None:
    """Drop log records after the checkpoint a run resumes from (those steps will be redone)."""
    if not path.is_file():
        return
    keep = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line).get("step", 0) <= last_step
    ]
    write_atomic(path, lambda p: p.write_text("".join(k + "\n" for k in keep), encoding="utf-8"))

"""What a run folder tells a reader: the environment it ran in, training-curve plots, and a summary
(``text2token report RUN_DIR``)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from ..errors import Text2TokenError
from ..layout import RUN_CONFIG_NAME, RUN_INFO_NAME, RUN_SUMMARY_NAME
from ..recipes import RECIPES, STAGES
from ..textio import atomic_path

KEY_PACKAGES = (
    "text2token",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "safetensors",
    "sentence-transformers",
    "mteb",
    "numpy",
)
# The loop's own bookkeeping fields of a log record; every other numeric field is a loss component or a metric.
BOOKKEEPING = ("stage", "step", "lr", "grad_norm", "seconds", "tokens")


def _git(*args: str) -> subprocess.CompletedProcess:
    """``git -C <this package's folder> ARGS``: fixed arguments, no shell; "git" from PATH on purpose (the user's
    git, wherever it is installed)."""
    command = ["git", "-C", str(Path(__file__).resolve().parent), *args]  # noqa: S607 — the user's git from PATH
    return subprocess.run(command, capture_output=True, text=True, timeout=5)  # noqa: S603 — fixed arguments


def environment_info() -> dict:
    """Versions of the key libraries, Python, platform, the git commit of the code (if it is a checkout)."""
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    commit = None
    try:
        out = _git("rev-parse", "HEAD")
        if out.returncode == 0:
            dirty = _git("status", "--porcelain", "--untracked-files=no").stdout.strip()
            commit = out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    import torch

    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": commit,
        "versions": versions,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "argv": sys.argv,
    }


def _read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_training_curves(run_dir: str | Path) -> Path | None:
    """``RUN/training_curves.png``: the loss (and its components, when there are several) and every metric
    the objectives logged (e.g. top-n hit rate), per step, stages in sequence."""
    run_dir = Path(run_dir)
    logs = {s.folder: _read_log(run_dir / s.folder / "train_log.jsonl") for s in STAGES.values()}
    logs = {k: v for k, v in logs.items() if v}
    if not logs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    offset = 0
    for stage, rows in logs.items():
        steps = [offset + r["step"] for r in rows]
        keys = list(
            dict.fromkeys(k for r in rows for k, v in r.items() if k not in BOOKKEEPING and isinstance(v, (int, float)))
        )
        components = [k for k in keys if k.startswith("loss/")]
        for key in keys:
            if key.startswith("loss/") and len(components) < 2:
                continue  # a single component is the loss itself
            ax = axes[0] if key.startswith("loss") else axes[1]
            ax.plot(steps, [r.get(key) for r in rows], label=f"{stage} {key}")
        offset = steps[-1]
    axes[0].set(title="training loss", xlabel="optimizer step (stages in sequence)", ylabel="loss")
    axes[1].set(title="metrics (hit rate: top-n predicted tokens vs targets)", xlabel="optimizer step")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    out = run_dir / "training_curves.png"
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out


def _run_stages(run_dir: Path, cfg: dict) -> list[str]:
    """The stages the run's own config trains (``RunConfig.run_stages``, from its recipe); for a config this version
    no longer validates, its recipe's stages as far as the file names them."""
    from ..errors import ConfigError
    from .config import load_config

    try:
        return load_config(run_dir / RUN_CONFIG_NAME).run_stages()
    except ConfigError:
        known = RECIPES.get(str(cfg.get("objective", "text2token")))
        return known.stages(cfg.get("stages", [])) if known else list(cfg.get("stages", []))


def summarize_run(run_dir: str | Path) -> str:
    """A readable summary of a run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_CONFIG_NAME).is_file():
        raise Text2TokenError(f"{run_dir} is not a text2token run folder (no {RUN_CONFIG_NAME})")
    import yaml

    cfg = yaml.safe_load((run_dir / RUN_CONFIG_NAME).read_text())
    info = json.loads((run_dir / RUN_INFO_NAME).read_text()) if (run_dir / RUN_INFO_NAME).is_file() else {}
    summary = json.loads((run_dir / RUN_SUMMARY_NAME).read_text()) if (run_dir / RUN_SUMMARY_NAME).is_file() else None
    lines = [
        f"run {run_dir}",
        f"  backbone {cfg['model']['name']}: {cfg['model']['pooling']} pooling, "
        f"{cfg['model']['attention']} attention; objective {cfg.get('objective', 'text2token')}",
    ]
    if info:
        v = info.get("versions", {})
        lines.append(
            f"  started {info.get('started')} on {info.get('device')}; text2token {v.get('text2token')}, "
            f"torch {v.get('torch')}, transformers {v.get('transformers')}, peft {v.get('peft')}; "
            f"commit {info.get('git_commit') or 'n/a'}"
        )
    for stage in _run_stages(run_dir, cfg):
        info = STAGES[stage]
        folder = run_dir / info.folder
        rows = _read_log(folder / "train_log.jsonl")
        section = cfg.get(info.section) or {}
        planned = section.get("steps", cfg.get("training", {}).get("steps"))  # runs before stage1.* kept it in training
        if not rows:
            lines.append(f"  {info.folder}: not started ({planned} steps planned)")
            continue
        state = (
            "finished" if (folder / "summary.json").is_file() else "in progress / interrupted (resume with --resume)"
        )
        first, last = rows[0], rows[-1]
        hit = f", hit rate {first.get('hit_rate')} → {last.get('hit_rate')}" if "hit_rate" in last else ""
        secs = sum(r.get("seconds", 0) for r in rows)
        lines.append(
            f"  {info.folder}: {last['step']}/{planned} steps, {state}; loss {first['loss']:.4f} → "
            f"{last['loss']:.4f}{hit}; {secs / max(1, len(rows)):.2f} s/step"
        )
        report = folder / "data_report.json"
        if report.is_file():
            d = json.loads(report.read_text())
            t = d.get("targets", {})
            lines.append(
                f"    data {d.get('file')}: {d.get('used')} texts used of {d.get('lines')}, "
                f"{d.get('blank_lines_skipped', 0)} blank skipped, {d.get('texts_truncated_to_max_length', 0)} "
                f"truncated"
                + (f", {t.get('skipped_no_content')} without content tokens" if "skipped_no_content" in t else "")
            )
    if summary:
        lines.append(
            f"  model: {run_dir / 'model'} ({summary['steps']} steps, {summary['seconds']} s, peak memory "
            f"{summary['peak_memory_mb']:.0f} MB)"
        )
        iso = summary.get("isotropy")
        if iso and "skipped" in iso:
            lines.append(f"  isotropy correction: none ({iso['skipped']})")
        elif iso:
            lines.append(
                f"  isotropy correction: mean of {iso.get('texts')} texts of {iso.get('corpus')} (seed {iso.get('seed')}) "
                f"subtracted, top {iso.get('directions')} direction(s) removed ({iso.get('seconds')} s to fit)"
            )
        else:
            lines.append("  isotropy correction: none (isotropy.enabled is off, or the run predates it)")
    else:
        lines.append("  model: not saved yet")
    for name in ("training_curves.png", "eval_demo.json"):
        if (run_dir / name).is_file():
            lines.append(f"  {name}: {run_dir / name}")
    return "\n".join(lines)

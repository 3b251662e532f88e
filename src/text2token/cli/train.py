"""``train``, ``report`` and ``analyze``: training runs and what they tell."""

from __future__ import annotations

import json
from pathlib import Path

from .common import load_model, note, read_texts, torch_dtype


def cmd_train(args) -> int:
    from ..layout import RUN_CONFIG_NAME
    from ..training import load_config
    from ..training.config import resume_config

    overrides = list(args.overrides)
    if args.stages:
        overrides.append(f"stages=[{args.stages}]")
    if args.errors:
        overrides.append(f"data.errors={args.errors}")
    if args.objective:
        overrides.append(f"objective={args.objective}")
    config = load_config(args.config, overrides + ([f"output_dir={args.output}"] if args.output else []))
    run_dir = Path(config.output_dir)
    if args.resume and (run_dir / RUN_CONFIG_NAME).is_file():
        # continue the run as it was configured: its own config.yaml, changed only where that is safe
        config = resume_config(run_dir, args.config, overrides)
        note(args, f"resuming {run_dir} as recorded in {run_dir / RUN_CONFIG_NAME}")
    elif args.resume and not args.config:  # nothing to resume and nothing to start from but the built-in defaults
        from ..errors import ConfigError

        held = (", ".join(sorted(p.name for p in run_dir.iterdir())[:8]) or "nothing") if run_dir.is_dir() else None
        raise ConfigError(
            f"--resume: {run_dir} holds no run (no {RUN_CONFIG_NAME}; "
            + (f"it holds {held}" if held is not None else "no such folder")
            + "); check the path, or give --config to start a new run there"
        )
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    from ..training import train
    from ..training.trainer import is_finished

    if args.resume and is_finished(config):
        print(
            f"{run_dir} is already finished ({', '.join(config.run_stages())}): nothing to do; the model is "
            f"{run_dir / 'model'} (give more steps, e.g. stage2.steps=N, to train further)"
        )
        return 0
    model_dir = train(config, resume=args.resume, show_progress_bar=not args.quiet)
    summary = json.loads((Path(config.output_dir) / "train_summary.json").read_text())
    per_stage = ", ".join(
        f"{k[6:]}: {v['steps']} steps at {v['seconds_per_step']} s/step"
        for k, v in summary.items()
        if k.startswith("stage_")
    )
    print(f"model saved to {model_dir}  ({per_stage}; peak memory {summary['peak_memory_mb']:.0f} MB)")
    return 0


def cmd_report(args) -> int:
    from ..training.report import plot_training_curves, summarize_run

    print(summarize_run(args.run_dir))
    if args.plot:
        out = plot_training_curves(args.run_dir)
        print(f"  plot: {out}" if out else "  no training log to plot yet")
    return 0


def cmd_analyze(args) -> int:
    from ..analysis import analyze, format_analysis
    from ..errors import Text2TokenError
    from ..textio import write_json_atomic

    texts = read_texts(args, args.input)[1]
    if len(texts) < 2:
        raise Text2TokenError(f"{args.input}: need at least 2 texts")
    trained = load_model(args)
    most = min(len(texts), trained.backbone.config.hidden_size)
    if args.directions > most:
        raise Text2TokenError(f"--directions {args.directions} is more than min(texts, hidden size) = {most}")
    base = trained.same_settings(args.base, device=args.device, dtype=torch_dtype(args))
    png = Path(args.output).with_suffix(".png") if args.output else Path("analysis.png")
    result = analyze(trained, base, texts, top_k=args.top_k, directions=args.directions, png=png)
    print(format_analysis(result, args.model, args.base))
    print(f"\nplot: {png}")
    if args.output:
        write_json_atomic(args.output, result)
        print(f"figures: {args.output}")
    return 0

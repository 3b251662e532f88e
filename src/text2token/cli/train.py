"""``train``, ``report`` and ``analyze``: training runs and what they tell."""

from __future__ import annotations

import json
from pathlib import Path

from ..modes import InputErrors, Objective
from ..recipes import objectives_help
from .argtypes import positive
from .arguments import INPUT_HELP, input_args, model_args
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


def add_train(command) -> None:
    """The ``train`` command's arguments."""
    p = command(
        "train",
        "train an embedder (stage 1 data-driven, stage 2 model-derived targets)",
        "Train LoRA adapters so that softmax(lm_head(pooled)) matches each text's target: stage 1 (data) the\n"
        "text's own content tokens, stage 2 (model) tokens the frozen stage-1 model finds characteristic.\n"
        "Settings come from --config (YAML), then from section.key=value overrides (anywhere on the line);\n"
        "the resolved config is saved in the run folder. --resume continues a run as recorded in its\n"
        "config.yaml (only steps, checkpoint/log cadence and added stages may change).",
    )
    p.add_argument("--config", help="YAML config file (default: built-in defaults)")
    p.add_argument("--output", help="run folder (overrides output_dir); the model goes to OUTPUT/model")
    p.add_argument("--stages", help="comma-separated stages to run: data (stage 1), model (stage 2); e.g. data,model")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its latest checkpoint")
    p.add_argument(
        "--objective", choices=Objective.values(), help=f"the training recipe — {objectives_help()}; same as objective="
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument(
        "--errors",
        choices=InputErrors.values(),
        help="invalid UTF-8 in the corpus: strict (error naming file and line) or replace (decode with "
        "U+FFFD, count the lines in the run's data_report.json); same as data.errors=",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="config overrides, anywhere on the line, e.g. stage1.steps=20 stage2.tau=0.01 model.pooling=mean",
    )


def add_report(command) -> None:
    """The ``report`` command's arguments."""
    p = command("report", "summarise a training run folder", "Stages, steps, losses, hit rates, data, versions.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by 'text2token train'")
    p.add_argument("--plot", action="store_true", help="(re)draw RUN_DIR/training_curves.png")


def add_analyze(command) -> None:
    """The ``analyze`` command's arguments."""
    p = command(
        "analyze",
        "how training moved the vocabulary view and the representation (table + PNG)",
        "Compares a trained model with its base on your texts: how much of each text's top tokens are its\n"
        "own tokens vs beyond the text, and the variance along the base's top singular directions.",
    )
    model_args(p)
    p.add_argument("--base", default="default", help="the untrained model to compare with")
    input_args(p, "--input", required=True, help="texts to analyse (a few hundred is plenty). " + INPUT_HELP)
    p.add_argument("--top-k", type=positive("--top-k"), default=10, help="top tokens per text")
    p.add_argument(
        "--directions",
        type=positive("--directions"),
        default=10,
        help="top singular directions of the base embeddings (at most min(texts, hidden size))",
    )
    p.add_argument("--output", help="write the figures as JSON here; the PNG goes next to it (else analysis.png)")

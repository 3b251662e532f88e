"""Text2Token vs LLM2Vec-style SimCSE vs the untrained backbone, at equal optimizer steps.

Same backbone (the bundled SmolLM2-135M unless --model), corpus (bundled Brown sentences),
batch size, training length, learning rate, LoRA, pooling (PromptEOL last token) and attention
(causal). Text2Token runs its two stages (20 + 30 steps by default: configs/demo.yaml); SimCSE runs
the same total number of steps (50). All three are evaluated on the offline suite.

Writes OUT/results.json, OUT/results.md (a Markdown table) and OUT/quality.png (bars per
category). Finished trainings and evaluations are reused when re-run (delete OUT to redo).

    python benchmarks/quality.py                # ~45 minutes on 2 CPU cores
    python benchmarks/quality.py --quick        # ~10 minutes: 4 + 4 vs 8 steps, smaller task subsets
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="4 + 4 vs 8 steps, the 'quick' suite (~10 minutes)")
    p.add_argument("--model", default="default", help="backbone (default: the bundled SmolLM2-135M-Instruct)")
    p.add_argument(
        "--config", default=str(ROOT / "configs" / "demo.yaml"), help="Text2Token config (both systems share it)"
    )
    p.add_argument("--stage1-steps", type=int, help="Text2Token stage-1 steps (default 20, quick 4)")
    p.add_argument("--stage2-steps", type=int, help="Text2Token stage-2 steps (default 30, quick 4)")
    p.add_argument("--suite", help="evaluation suite (default demo, quick: quick)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quality"), help="output folder")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return p.parse_args(argv)


def train_system(name: str, config: str, overrides: list[str]) -> tuple[Path, dict]:
    from text2token.training import load_config, train

    cfg = load_config(config, overrides)
    run = Path(cfg.output_dir)
    summary_file = run / "train_summary.json"
    if (run / "model" / "text2token_config.json").is_file() and summary_file.is_file():
        print(f"[{name}] reusing the trained model in {run / 'model'}")
    else:
        print(f"[{name}] training: {' '.join(overrides)}")
        train(cfg, resume=True)
    return run / "model", json.loads(summary_file.read_text())


def scored_like(
    result: dict, suite: str, dtype: str, max_length: int | None = None, remove_directions: int = 0
) -> bool:
    """Whether an evaluation was scored as one asked for now would be: the same suite, mteb's evaluators, the same
    encoding length (``None``: whatever the model's is), dtype and LM-head filter. Its tasks may still lag behind
    the suite's (:func:`complete`)."""
    return (
        result.get("suite") == suite
        and result.get("evaluator") == "mteb"
        and max_length in (None, result.get("max_length"))
        and result.get("remove_directions", 0) == remove_directions
        and result.get("dtype", "float32") == dtype
    )


def complete(result: dict, suite: str) -> bool:
    """Whether an evaluation holds every task of the suite as it is defined now (a task may join a suite)."""
    from text2token.evaluation.suite import SUITES

    return list(result["tasks"]) == list(SUITES[suite])


def evaluate(name: str, model_ref: str, suite: str, cache: Path, **kwargs) -> dict:
    from text2token import Text2TokenModel
    from text2token.evaluation import evaluate_suite

    remove = kwargs.pop("remove_directions", 0)  # the LM head's top directions projected out (text2token.directions)
    dtype = kwargs.pop("dtype", None) or "float32"  # the encoding dtype (a study may score in bfloat16 on CPU)
    earlier = None
    if cache.is_file():
        result = json.loads(cache.read_text())
        if result.get("model") == model_ref and scored_like(result, suite, dtype, kwargs.get("max_length"), remove):
            if complete(result, suite):
                print(f"[{name}] reusing {cache}")
                return result
            earlier = result  # the suite gained (or reordered) tasks: score only what is missing
    print(f"[{name}] evaluating on the '{suite}' suite" + (" (the tasks missing from the cache)" if earlier else ""))
    import torch

    from text2token.training.checkpoint_model import is_checkpoint, load_checkpoint_model

    if is_checkpoint(model_ref):  # a training checkpoint: its stages' adapters merged into the backbone
        model = load_checkpoint_model(model_ref)
        model.max_length = kwargs.get("max_length") or model.max_length
        model.backbone.to(getattr(torch, dtype))
    else:
        model = Text2TokenModel.from_pretrained(model_ref, dtype=getattr(torch, dtype), **kwargs)
    model.remove_head_directions(remove)
    t0 = time.perf_counter()
    result = {
        **evaluate_suite(model, suite, reuse=earlier),
        "model": model_ref,
        "eval_seconds": round(time.perf_counter() - t0, 1),
        "dtype": dtype,
        **({"remove_directions": remove} if remove else {}),
    }
    from text2token.textio import write_json_atomic

    write_json_atomic(cache, result)
    return result


def markdown(systems: dict[str, dict], suite: str) -> str:
    names = list(systems)
    first = systems[names[0]]["eval"]
    lines = [
        f"Suite `{suite}`; scores 0–100.",
        "",
        "| task | type | metric | " + " | ".join(names) + " |",
        "|" + "---|" * (3 + len(names)),
    ]
    for task, info in first["tasks"].items():
        cells = [f"{systems[n]['eval']['tasks'][task]['main_score']:.2f}" for n in names]
        lines.append(f"| {task} | {info['type']} | {info['metric']} | " + " | ".join(cells) + " |")
    lines.append("| **mean** | | | " + " | ".join(f"**{systems[n]['eval']['mean']:.2f}**" for n in names) + " |")
    lines.append("| optimizer steps | | | " + " | ".join(str(systems[n]["steps"]) for n in names) + " |")
    lines.append(
        "| training wall time (s) | | | "
        + " | ".join(
            f"{systems[n]['train_seconds']:.0f}" if systems[n]["train_seconds"] is not None else "–" for n in names
        )
        + " |"
    )
    return "\n".join(lines)


def plot(systems: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(systems)
    cats = list(systems[names[0]]["categories"]) + ["mean"]
    x = np.arange(len(cats))
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, n in enumerate(names):
        vals = [systems[n]["categories"][c] for c in cats[:-1]] + [systems[n]["eval"]["mean"]]
        bars = ax.bar(x + (i - (len(names) - 1) / 2) * width, vals, width, label=n)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, cats)
    save_figure(fig, ax, path, "Text2Token vs SimCSE vs untrained (equal steps)", legend_size=8)


def save_figure(
    fig, ax, path: Path, title: str, ylabel: str = "score (0–100)", legend_size: int = 7, legend_outside: bool = False
) -> None:
    """Label, lay out, write and close a benchmark figure (the finish every plot here shares); a long legend
    goes outside the axes, to the right, so that it hides no bar."""
    import matplotlib.pyplot as plt

    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=legend_size, **({"loc": "upper left", "bbox_to_anchor": (1.01, 1)} if legend_outside else {}))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    s1 = args.stage1_steps or (4 if args.quick else 20)
    s2 = args.stage2_steps or (4 if args.quick else 30)
    suite = args.suite or ("quick" if args.quick else "demo")
    out = Path(args.out) / ("quick" if args.quick else "full")
    out.mkdir(parents=True, exist_ok=True)
    common = [f"model.name={args.model}", "training.save_every=10"]

    t2t_dir, t2t_summary = train_system(
        "text2token",
        args.config,
        [
            *common,
            f"output_dir={out / 'runs' / 'text2token'}",
            "stages=[data,model]",
            f"stage1.steps={s1}",
            f"stage2.steps={s2}",
        ],
    )
    simcse_dir, simcse_summary = train_system(
        "simcse",
        args.config,
        [*common, f"output_dir={out / 'runs' / 'simcse'}", "objective=simcse", f"simcse.steps={s1 + s2}"],
    )

    from text2token.training import load_config

    cfg = load_config(args.config, common)
    systems = {
        "untrained": {
            "steps": 0,
            "train_seconds": None,
            "eval": evaluate(
                "untrained",
                args.model,
                suite,
                out / "eval-untrained.json",
                pooling=cfg.model.pooling,
                attention=cfg.model.attention,
            ),
        },
        "Text2Token": {
            "steps": t2t_summary["steps"],
            "train_seconds": t2t_summary["seconds"],
            "eval": evaluate("text2token", str(t2t_dir), suite, out / "eval-text2token.json"),
        },
        "SimCSE": {
            "steps": simcse_summary["steps"],
            "train_seconds": simcse_summary["seconds"],
            "eval": evaluate("simcse", str(simcse_dir), suite, out / "eval-simcse.json"),
        },
    }
    for info in systems.values():
        info["categories"] = info["eval"]["categories"]  # evaluate_suite's per-type means
    t2t, sim = systems["Text2Token"], systems["SimCSE"]
    results = {
        "suite": suite,
        "backbone": args.model,
        "config": args.config,
        "stage1_steps": s1,
        "stage2_steps": s2,
        "simcse_steps": s1 + s2,
        "systems": systems,
        "text2token_minus_simcse_mean": round(t2t["eval"]["mean"] - sim["eval"]["mean"], 2),
        "train_time_ratio_text2token_vs_simcse": round(t2t["train_seconds"] / sim["train_seconds"], 3),
    }
    from text2token.textio import write_json_atomic

    write_json_atomic(out / "results.json", results)
    table = markdown(systems, suite)
    (out / "results.md").write_text(table + "\n", encoding="utf-8")
    if not args.no_plot:
        plot(systems, out / "quality.png")
    print()
    print(table)
    print(
        f"\nText2Token − SimCSE (mean): {results['text2token_minus_simcse_mean']:+.2f}; training time ratio "
        f"Text2Token/SimCSE: {results['train_time_ratio_text2token_vs_simcse']:.2f}"
    )
    print(
        f"written: {out / 'results.json'}, {out / 'results.md'}" + ("" if args.no_plot else f", {out / 'quality.png'}")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

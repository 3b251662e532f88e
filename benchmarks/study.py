"""A quality study: named recipes (benchmarks/recipes.yaml) trained with several seeds and evaluated on an offline
suite; resumable (a killed study continues: finished trainings and evaluations are reused, an unfinished training
resumes from its last checkpoint); results as one JSON, a Markdown table with mean ± spread (half the range over
seeds) per recipe, task and category, and a bar chart.

Every recipe is a config file (its ``config``, else ``configs/demo.yaml``) plus its overrides, so it runs the fast
training path the trainer picks (bf16 frozen backbone where the hardware has native bf16; on a GPU everything the
trainer does there).

    python benchmarks/study.py --study budget_200 --seeds 0,1 --suite demo --out benchmarks/results/study_200
    python benchmarks/study.py --study budget_200 --recipes text2token,simcse --seeds 0   # a subset, same folder
    python benchmarks/study.py --study dev_200 --seeds 0,1                    # the dev suite (the default suite)
    python benchmarks/study.py --study dev_200 --backbone gemma3-270m        # the same recipes on another backbone

``--backbone`` adds ``model.name=BACKBONE`` to every recipe (the default output folder gets the backbone's name).
A recipe with ``from: OTHER`` trains nothing: it evaluates OTHER's trained model of the same seed under its own
evaluation settings (``remove_directions: K``: the LM head's top-K directions projected out of every embedding,
:mod:`text2token.directions`); ``remove_directions`` on an untrained recipe applies to the untrained backbone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import complete, evaluate, save_figure, scored_like  # noqa: E402  (same evaluator and cache format as the quality benchmark)


def recipe_config(recipe: dict, default_config: str, extra: list[str] | tuple = ()):
    """A recipe's resolved training config: its ``config`` file (a path from the repository root; default: the
    study's ``--config``) plus its ``overrides``, then ``extra``."""
    from text2token.training import load_config

    path = ROOT / recipe["config"] if "config" in recipe else default_config
    return load_config(path, [*recipe.get("overrides", []), *extra])


def recipe_steps(cfg) -> int:
    """The optimizer steps a config trains, over the stages it runs (what a recipe's ``steps`` must state)."""
    from text2token.recipes import STAGES

    return sum(getattr(cfg, STAGES[key].section).steps for key in cfg.run_stages())


def run_recipe(
    name: str,
    recipe: dict,
    seed: int,
    out: Path,
    suite: str,
    config: str,
    max_length: int,
    curve_every: int = 0,
    backbone: list[str] | tuple = (),
    recipes: dict | None = None,
    eval_dtype: str = "float32",
) -> dict:
    from text2token.training import train

    folder = out / "runs" / f"{name}-seed{seed}"
    post = {"remove_directions": recipe["remove_directions"]} if recipe.get("remove_directions") else {}
    post["dtype"] = eval_dtype
    if not recipe.get("train", True):
        base = recipe_config(recipe, config, backbone)
        ev = evaluate(
            f"{name}",
            base.model.name,
            suite,
            out / f"eval-{name}.json",
            max_length=max_length,
            **_model_settings(base),
            **post,
        )
        return {"eval": ev, "train_seconds": 0.0}
    if "from" in recipe:  # another recipe's trained model, evaluated under this recipe's settings
        source = out / "runs" / f"{recipe['from']}-seed{seed}"
        summary_file = source / "train_summary.json"
        if not summary_file.is_file():
            if recipes is None or recipe["from"] not in recipes:
                raise SystemExit(f"recipe {name}: 'from: {recipe['from']}' names no recipe of this study")
            run_recipe(
                recipe["from"],
                recipes[recipe["from"]],
                seed,
                out,
                suite,
                config,
                max_length,
                0,
                backbone,
                recipes,
                eval_dtype,
            )
        summary = json.loads(summary_file.read_text())
        ev = evaluate(
            f"{name} seed {seed}",
            str(source / "model"),
            suite,
            out / f"eval-{name}-seed{seed}.json",
            max_length=max_length,
            **post,
        )
        return {"eval": ev, "train_seconds": summary["seconds"], "steps": summary["steps"]}
    keep = ["training.keep_checkpoints=1000"] if curve_every else []  # the checkpoints the curve evaluates
    cfg = recipe_config(recipe, config, [*backbone, *keep, f"training.seed={seed}", f"output_dir={folder}"])
    summary_file = folder / "train_summary.json"
    if not summary_file.is_file():
        print(
            f"[{name} seed {seed}] training: {recipe.get('config', 'the --config file')} "
            f"{' '.join(recipe.get('overrides', []))}",
            flush=True,
        )
        train(cfg, resume=True)
    summary = json.loads(summary_file.read_text())
    ev = evaluate(
        f"{name} seed {seed}",
        str(folder / "model"),
        suite,
        out / f"eval-{name}-seed{seed}.json",
        max_length=max_length,
        **post,
    )
    curve = {}
    for total, ckpt in curve_points(cfg, folder, curve_every):
        curve[str(total)] = evaluate(
            f"{name} seed {seed} @{total}",
            str(ckpt),
            suite,
            out / f"eval-{name}-seed{seed}-step{total}.json",
            max_length=max_length,
            dtype=eval_dtype,
        )["mean"]
    if curve:
        curve[str(summary["steps"])] = ev["mean"]
    return {"eval": ev, "train_seconds": summary["seconds"], "steps": summary["steps"], "curve": curve}


def curve_points(cfg, folder: Path, every: int) -> list[tuple[int, Path]]:
    """``(total optimizer steps, checkpoint folder)`` every ``every`` steps before the end of the run (stages
    counted in order: stage 2's step 30 after a 20-step stage 1 is step 50), for the checkpoints that exist."""
    from text2token.recipes import STAGES

    if not every:
        return []
    points, offset, stages = [], 0, cfg.run_stages()
    for key in stages:
        steps = getattr(cfg, STAGES[key].section).steps
        end = offset + steps + (key != stages[-1])  # a stage's last step, but not the run's (its final model)
        for total in range(every * (offset // every + 1), end, every):
            ckpt = folder / STAGES[key].folder / "checkpoints" / f"checkpoint-{total - offset:07d}"
            if ckpt.is_dir():
                points.append((total, ckpt))
        offset += steps
    return points


def _model_settings(cfg) -> dict:
    return {"pooling": cfg.model.pooling, "attention": cfg.model.attention}


def spread(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (max(values) - min(values)) / 2


def table(results: dict) -> str:
    names = list(results)
    first = next(iter(results.values()))["seeds"]
    tasks = list(next(iter(first.values()))["eval"]["tasks"])
    cats = list(next(iter(first.values()))["eval"]["categories"])
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def cell(name, get):
        try:
            vals = [get(r) for r in results[name]["seeds"].values()]
        except KeyError:  # scored before this task (or category) joined the suite
            return "–"
        m, h = spread(vals)
        return f"{m:.2f} ± {h:.2f}" if len(vals) > 1 else f"{m:.2f}"

    def mean(name):
        stale = any(list(r["eval"]["tasks"]) != tasks for r in results[name]["seeds"].values())
        return f"**{cell(name, lambda r: r['eval']['mean'])}**" + (" (fewer tasks)" if stale else "")

    for t in tasks:
        lines.append(
            f"| {t} | " + " | ".join(cell(n, lambda r, t=t: r["eval"]["tasks"][t]["main_score"]) for n in names) + " |"
        )
    for c in cats:
        lines.append(
            f"| *{c}* | " + " | ".join(cell(n, lambda r, c=c: r["eval"]["categories"][c]) for n in names) + " |"
        )
    lines.append("| **mean** | " + " | ".join(mean(n) for n in names) + " |")
    lines.append("| seeds | " + " | ".join(",".join(results[n]["seeds"]) for n in names) + " |")
    lines.append("| total steps | " + " | ".join(str(results[n]["steps"]) for n in names) + " |")
    lines.append(
        "| training time (s, mean) | "
        + " | ".join(f"{statistics.mean(r['train_seconds'] for r in results[n]['seeds'].values()):.0f}" for n in names)
        + " |"
    )
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(results)
    first = next(iter(results[names[0]]["seeds"].values()))["eval"]
    cats = list(first["categories"]) + ["mean"]
    x = np.arange(len(cats))
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(11 if len(names) > 6 else 9, 4))
    colors = plt.get_cmap("tab10" if len(names) <= 10 else "tab20").colors  # one distinct colour per recipe
    equal_steps = len({results[n]["steps"] for n in names if results[n]["steps"]}) <= 1  # e.g. not an equal-time row
    for i, n in enumerate(names):
        runs = list(results[n]["seeds"].values())
        vals = [[r["eval"]["categories"].get(c, np.nan) for r in runs] for c in cats[:-1]]  # nan: a stale evaluation
        vals.append([r["eval"]["mean"] for r in runs])
        means = [statistics.mean(v) for v in vals]
        errs = [(max(v) - min(v)) / 2 for v in vals]
        bars = ax.bar(
            x + (i - (len(names) - 1) / 2) * width,
            means,
            width,
            yerr=errs,
            capsize=2,
            label=n if equal_steps else f"{n} ({results[n]['steps']} steps)",
            color=colors[i % len(colors)],
        )
        ax.bar_label(bars, fmt="%.1f", fontsize=6)
    ax.set_xticks(x, [c.replace("Classification", "\nClassification") if c != "Classification" else c for c in cats])
    title = "recipes at equal optimizer steps" if equal_steps else "recipes (total optimizer steps in the legend)"
    save_figure(fig, ax, path, f"{title} (mean ± half-range over seeds)", legend_outside=len(names) > 6)


def plot_curves(results: dict, path: Path) -> None:
    """Mean score vs optimizer steps for the runs with evaluated checkpoints (step 0: the untrained backbone)."""
    runs = {(n, s): r["curve"] for n, e in results.items() for s, r in e["seeds"].items() if r.get("curve")}
    if not runs:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = results.get("untrained", {}).get("seeds", {}).get("-", {}).get("eval", {}).get("mean")
    fig, ax = plt.subplots(figsize=(7, 4))
    for (name, seed), curve in runs.items():
        points = ([(0, start)] if start is not None else []) + sorted((int(k), v) for k, v in curve.items())
        ax.plot(*zip(*points), marker="o", label=f"{name} (seed {seed})")
    ax.set_xlabel("optimizer steps")
    save_figure(fig, ax, path, "score vs steps (checkpoints evaluated along the way)", "mean score (0–100)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", default="budget_200", help="a top-level key of --recipes-file")
    p.add_argument("--recipes-file", default=str(Path(__file__).resolve().parent / "recipes.yaml"))
    p.add_argument("--recipes", help="comma-separated subset of the study's recipes (default: all, in file order)")
    p.add_argument("--seeds", default="0,1", help="comma-separated training seeds")
    p.add_argument("--suite", default="dev", help="offline evaluation suite")
    p.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    p.add_argument(
        "--backbone",
        help="train and evaluate every recipe on this backbone (model.name=...; e.g. "
        "gemma3-270m); default: each recipe's config",
    )
    p.add_argument("--out", help="output folder (default: benchmarks/results/study_<suite>[_<backbone>])")
    p.add_argument(
        "--no-train",
        action="store_true",
        help="only evaluate and tabulate the runs already trained (a report of what the study has)",
    )
    p.add_argument(
        "--curve-every",
        type=int,
        default=0,
        help="also evaluate the checkpoints every N optimizer steps (score vs steps; keeps checkpoints)",
    )
    p.add_argument(
        "--eval-dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="dtype the models encode in when scored (bfloat16: ~2x faster on CPUs with native bf16)",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=512,
        help="encoding length for the evaluation (every model, trained or not, is scored at this length)",
    )
    args = p.parse_args(argv)
    import torch

    from text2token.devices import warn_if_bf16_is_emulated

    if args.eval_dtype == "bfloat16" and not torch.cuda.is_available():
        # Said before the hours of training, not only when the first model is scored.
        warn_if_bf16_is_emulated(torch.bfloat16, torch.device("cpu"))
    recipes = yaml.safe_load(Path(args.recipes_file).read_text())[args.study]
    chosen = args.recipes.split(",") if args.recipes else list(recipes)
    unknown = [r for r in chosen if r not in recipes]
    if unknown:
        raise SystemExit(f"unknown recipe(s) {', '.join(unknown)}; {args.study} has: {', '.join(recipes)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    backbone = [f"model.name={args.backbone}"] if args.backbone else []
    out = Path(
        args.out
        or ROOT / "benchmarks" / "results" / (f"study_{args.suite}" + (f"_{args.backbone}" if args.backbone else ""))
    )
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.json"
    results = json.loads(results_file.read_text())["recipes"] if results_file.is_file() else {}
    t0 = time.perf_counter()
    for seed in seeds:  # all recipes at one seed first: a partial study still compares them
        for name in chosen:
            recipe = recipes[name]
            entry = results.setdefault(
                name,
                {
                    "steps": recipe.get("steps"),
                    "config": recipe.get("config"),
                    "overrides": recipe.get("overrides", []),
                    "seeds": {},
                },
            )
            key = str(seed) if recipe.get("train", True) else "-"
            trained_as = recipe.get("from", name)  # a 'from' recipe evaluates another recipe's training
            if (
                args.no_train
                and key != "-"
                and not (out / "runs" / f"{trained_as}-seed{seed}" / "train_summary.json").is_file()
            ):
                continue
            done = entry["seeds"].get(key)
            if (
                done
                and scored_like(
                    done["eval"], args.suite, args.eval_dtype, args.max_length, recipe.get("remove_directions", 0)
                )
                and complete(done["eval"], args.suite)
            ):
                continue  # trained and scored the way this study scores (else: evaluated again — only the tasks
                # missing from the cached evaluation when the suite grew —, training reused)
            entry["seeds"][key] = run_recipe(
                name,
                recipe,
                seed,
                out,
                args.suite,
                args.config,
                args.max_length,
                args.curve_every,
                backbone,
                recipes,
                args.eval_dtype,
            )
            from text2token.textio import write_json_atomic

            write_json_atomic(
                results_file,
                {
                    "study": args.study,
                    "suite": args.suite,
                    "backbone": args.backbone,
                    "eval_dtype": args.eval_dtype,
                    "recipes": results,
                },
            )
    results = {n: results[n] for n in recipes if n in results and results[n]["seeds"]}
    md = (
        f"Study `{args.study}`, suite `{args.suite}`"
        + (f", backbone `{args.backbone}`" if args.backbone else "")
        + ", scores 0–100 (mean ± half the range over seeds).\n\n"
        + table(results)
    )
    (out / "results.md").write_text(md + "\n", encoding="utf-8")
    plot(results, out / "study.png")
    plot_curves(results, out / "curve.png")
    print("\n" + md)
    print(f"\nwritten: {results_file}, {out / 'results.md'}, {out / 'study.png'} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Why does few-shot classification fall after training? Scores the dev suite's classification tasks under both
protocols — mteb's few-shot (8 examples per label, 10 experiments) and one classifier fit on every training row —
for several models, on the same seeded subsets as the `dev` suite. If the all-train accuracy holds while the
few-shot one falls, the label information is still in the embedding but no longer along its dominant directions
(which is what 8 examples per label can find).

    python benchmarks/classification_probe.py --models default,RUN/model,... --names untrained,combined,...
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from text2token import Text2TokenModel
from text2token.evaluation.suite import SUITES, evaluate_task, load_task
from text2token.textio import write_json_atomic


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", required=True, help="comma-separated models (folders, 'default', ...)")
    p.add_argument("--names", help="comma-separated column names (default: the model references)")
    p.add_argument("--suite", default="dev", help="the suite whose classification tasks and subsets are used")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--out", default="benchmarks/results/classification_probe.json")
    args = p.parse_args(argv)
    models = args.models.split(",")
    names = args.names.split(",") if args.names else models
    tasks = [load_task(n, limit=lim) for n, lim in SUITES[args.suite].items()]
    tasks = [t for t in tasks if t.type == "Classification"]
    results: dict = {}
    for name, ref in zip(names, models):
        model = Text2TokenModel.from_pretrained(ref, dtype=getattr(torch, args.dtype), device="cpu")
        t0 = time.perf_counter()
        results[name] = {
            "model": ref,
            "tasks": {
                t.name: {
                    proto: round(evaluate_task(model, t, classification=proto), 2) for proto in ("mteb", "all-train")
                }
                for t in tasks
            },
        }
        print(f"{name}: {results[name]['tasks']} ({time.perf_counter() - t0:.0f} s)", flush=True)
        del model
    write_json_atomic(Path(args.out), {"suite": args.suite, "dtype": args.dtype, "results": results})
    header = "| model | " + " | ".join(f"{t.name} few-shot | all-train" for t in tasks) + " |"
    lines = [header, "|---|" + "---|---|" * len(tasks)]
    for name, r in results.items():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{r['tasks'][t.name]['mteb']:.2f} | {r['tasks'][t.name]['all-train']:.2f}" for t in tasks)
            + " |"
        )
    print("\n".join(lines))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``eval``: the offline suite (with a baseline column) or MTEB tasks."""

from __future__ import annotations

import json
from pathlib import Path

from .argtypes import positive
from .arguments import model_args
from .common import load_model, torch_dtype


def cmd_eval(args) -> int:
    from ..evaluation import evaluate_suite, format_table
    from ..evaluation.suite import require_suite
    from ..textio import write_json_atomic

    if args.mteb or args.mteb_tasks:
        return _eval_mteb(args)
    require_suite(args.suite)  # before a model is loaded
    if args.remove_directions and args.card:
        from ..errors import Text2TokenError

        raise Text2TokenError(
            "--card records the saved model's own scores; it cannot be combined with "
            "--remove-directions (the folder does not apply that filter)"
        )
    from ..evaluation.mteb_runner import MTEBEncoder
    from ..training.isotropy_fit import refit_like

    model = load_model(args)
    correction = model.correction
    raw_too = correction is not None and not args.no_raw

    def score(m):
        return evaluate_suite(m, args.suite, batch_size=args.batch_size, classification=args.classification_protocol)

    columns = {}
    if args.baseline:
        base = model.same_settings(args.baseline, device=args.device, dtype=torch_dtype(args))
        base.remove_head_directions(args.remove_directions)
        label = f"untrained ({args.baseline})" if args.baseline == "default" else args.baseline
        print(f"evaluating baseline {args.baseline} ({model.pooling} pooling, {model.attention} attention)")
        encoder = MTEBEncoder(base, batch_size=args.batch_size, reuse_raw=True)  # raw vectors encoded once
        if correction is None or raw_too:
            columns[label] = score(encoder)
        if correction is not None:  # a fair comparison: the baseline gets the same correction, fitted the same way
            print(f"fitting the same isotropy correction on {args.baseline} ({_fit_recipe(correction)})")
            refit_like(base, correction.fitted_on, batch_size=args.batch_size, show_progress_bar=not args.quiet)
            columns[f"{label} + isotropy"] = score(encoder)
        del base, encoder
    model.remove_head_directions(args.remove_directions)
    print(
        f"evaluating {args.model}"
        + (f" (LM head's top {args.remove_directions} direction(s) removed)" if args.remove_directions else "")
    )
    encoder = MTEBEncoder(model, batch_size=args.batch_size, reuse_raw=True)
    if raw_too:
        model.set_correction(None)
        columns[f"{args.model} (raw)"] = score(encoder)
        model.set_correction(correction)
    columns[args.model] = score(encoder)
    print()
    print(format_table(columns))
    if correction is not None:
        print(
            f"\n{args.model} carries an isotropy correction ({_fit_recipe(correction)}); its column is what it encodes. "
            + ("Each '+ isotropy' / '(raw)' column shows the same model with and without it." if raw_too else "")
        )
    if args.output:
        out = next(reversed(columns.values())) if len(columns) == 1 else {"models": columns}
        write_json_atomic(args.output, out)
        print(f"\nresults written to {args.output}")
    if args.card:
        from ..errors import Text2TokenError
        from ..layout import MODEL_CONFIG_NAME
        from ..model_card import record_evaluation

        if not (Path(args.model) / MODEL_CONFIG_NAME).is_file():
            raise Text2TokenError(
                f"--card needs a saved text2token model folder; {args.model} has no {MODEL_CONFIG_NAME}"
            )
        record_evaluation(args.model, columns[args.model])
        print(f"evaluation recorded in {Path(args.model) / 'README.md'}")
    return 0


def _fit_recipe(correction) -> str:
    f = correction.fitted_on
    return (
        f"mean of {f.get('texts')} texts of {f.get('corpus')} (seed {f.get('seed')}), "
        f"top {correction.num_directions} direction(s) removed"
    )


def _eval_mteb(args) -> int:
    from ..backbone import cache_dir
    from ..errors import InputFileError, Text2TokenError
    from ..evaluation.mteb_runner import MTEBEncoder, format_mteb_table, resolve_tasks, run_mteb
    from ..textio import write_json_atomic

    if args.mteb and args.mteb_tasks:
        raise Text2TokenError("give either --mteb BENCHMARK or --mteb-tasks, not both")
    if args.baseline:
        raise Text2TokenError("--baseline works with the offline suite; for MTEB run eval once per model")
    tasks = resolve_tasks(
        args.mteb, [t.strip() for t in args.mteb_tasks.split(",") if t.strip()] if args.mteb_tasks else None
    )
    prompts = None
    if args.prompts:
        try:
            prompts = json.loads(Path(args.prompts).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputFileError(args.prompts, f"cannot read prompts JSON ({exc})") from None
        if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
            raise InputFileError(args.prompts, "expected a JSON object of name -> prompt string")
    encoder = MTEBEncoder(load_model(args), prompts=prompts, batch_size=args.batch_size)
    cache = args.mteb_cache or str(cache_dir() / "mteb-results")
    print(f"running {len(tasks)} MTEB task(s) with {args.model} (results cache: {cache})")
    result = run_mteb(encoder, tasks, cache_dir=cache)
    print()
    print(format_mteb_table(result))
    if args.output:
        write_json_atomic(args.output, {"model": args.model, "benchmark": args.mteb, **result})
        print(f"\nresults written to {args.output}")
    return 0


def add_eval(command) -> None:
    """The ``eval`` command's arguments."""
    p = command(
        "eval",
        "evaluate on the bundled offline tasks or MTEB",
        "The bundled suites run offline; --mteb / --mteb-tasks run MTEB 2.x (needs the datasets: hub or HF\n"
        "cache). --baseline evaluates a second model with the same pooling, attention and template.",
    )
    model_args(p)
    p.add_argument(
        "--suite",
        default="demo",
        help="bundled offline tasks: demo (seeded subsets), quick (smaller subsets), dev (all eleven tasks, "
        "seeded subsets: what studies choose on), held-out, or offline (= full: the first six tasks, "
        "complete); scored by mteb's own evaluators",
    )
    p.add_argument(
        "--remove-directions",
        type=int,
        default=0,
        metavar="K",
        help="project the LM head's top-K directions out of every embedding before scoring (a post-hoc "
        "filter; 0 = off), for the model and the --baseline alike",
    )
    p.add_argument(
        "--classification-protocol",
        choices=["mteb", "all-train"],
        default="mteb",
        help="bundled classification tasks: mteb = MTEB's few-shot protocol (8 examples per label, 10 "
        "experiments); all-train = one classifier fit on every training row (less variance)",
    )
    p.add_argument(
        "--mteb",
        metavar="BENCHMARK",
        help="run an MTEB 2.x benchmark instead, e.g. 'MTEB(eng, v2)' (needs the datasets: hub or HF cache)",
    )
    p.add_argument(
        "--mteb-tasks", metavar="A,B,...", help="run these MTEB tasks, e.g. STSBenchmark,Banking77Classification"
    )
    p.add_argument(
        "--mteb-cache",
        metavar="DIR",
        help="MTEB results cache (default: $TEXT2TOKEN_HOME/mteb-results); finished tasks are not rerun",
    )
    p.add_argument(
        "--prompts",
        metavar="FILE.json",
        help='per-task / per-type prompts for MTEB, e.g. {"query": "Query: ", "STS": "..."}',
    )
    p.add_argument(
        "--baseline",
        metavar="MODEL",
        help="also evaluate this model with the same pooling/attention (e.g. the untrained 'default')",
    )
    p.add_argument(
        "--no-raw",
        action="store_true",
        help="for a model with an isotropy correction: skip the columns without it (by default the table shows "
        "the model and the --baseline with and without the correction, the baseline's fitted the same way)",
    )
    p.add_argument("--output", help="write the results as JSON to this file")
    p.add_argument(
        "--card",
        action="store_true",
        help="also record the results in the model folder (text2token_config.json and its README.md model card)",
    )
    p.add_argument("--batch-size", type=positive("--batch-size"), default=32, help="texts per forward pass")

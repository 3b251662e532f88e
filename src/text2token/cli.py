"""The ``text2token`` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

EXAMPLES = """examples:
  text2token train --config configs/demo.yaml --output runs/demo
  text2token train stage1.steps=20 stage1.lr=1e-4 model.pooling=mean
  text2token train --objective simcse --output runs/simcse simcse.steps=50   # the LLM2Vec baseline
  text2token encode --model runs/demo/model --input texts.txt --output emb.npy --normalize
  text2token explain --model runs/demo/model "The cat sat on the mat."
  text2token eval --model runs/demo/model --suite demo --baseline default
  text2token index --model runs/demo/model --corpus docs.jsonl --output runs/demo/index
  text2token search --index runs/demo/index --query "interest rates" --hybrid 0.5
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="text2token",
        description="Turn a decoder-only LM into a text embedder by token target prediction (Text2Token).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train an embedder (stage 1 data-driven, stage 2 model-derived targets)",
                       description="Train LoRA adapters so that softmax(lm_head(pooled)) matches each text's "
                                   "target: stage 1 (data) the text's own content tokens, stage 2 (model) tokens "
                                   "the frozen stage-1 model finds characteristic. Settings come from --config (YAML) and then from "
                                   "section.key=value overrides; the resolved config is saved in the output folder.")
    t.add_argument("--config", help="YAML config file (default: built-in defaults)")
    t.add_argument("--output", help="run folder (overrides output_dir); the model goes to OUTPUT/model")
    t.add_argument("--stages", help="comma-separated stages to run: data (stage 1), model (stage 2); e.g. data,model")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the run folder")
    t.add_argument("--objective", choices=["text2token", "simcse", "combined"],
                   help="text2token (default: the configured stages), simcse (LLM2Vec's unsupervised contrastive "
                        "baseline with the same LoRA, pooling, attention and data; simcse.steps, simcse.lr, "
                        "simcse.dropout, simcse.temperature), or combined (each stage: combined.token_weight·KL + "
                        "combined.simcse_weight·SimCSE); same as objective=")
    t.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    t.add_argument("--errors", choices=["strict", "replace"],
                   help="invalid UTF-8 in the corpus: strict (default; error naming file and line) or replace "
                        "(decode with U+FFFD, count the lines in the run's data_report.json); same as data.errors=")
    t.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="config overrides, anywhere on the line, e.g. stage1.steps=20 stage2.tau=0.01 model.pooling=mean")

    e = sub.add_parser("encode", help="embed texts into a .npy matrix")
    _model_args(e)
    e.add_argument("--input", required=True, help=".txt (one text per line) or .jsonl (field 'text')")
    e.add_argument("--field", default="text", help="JSONL field holding the text (default: text)")
    e.add_argument("--output", required=True, help="output .npy file (float32, one row per input text)")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    e.add_argument("--errors", choices=["strict", "replace"], default="strict",
                   help="invalid UTF-8 in --input: strict (error naming the line) or replace (U+FFFD, counted)")

    x = sub.add_parser("explain", help="show the top LM-head tokens of each text's embedding")
    _model_args(x)
    x.add_argument("--top-k", type=int, default=10)
    x.add_argument("--json", action="store_true", help="print JSON lines instead of a readable list")
    x.add_argument("--input", help="explain every text of this .txt/.jsonl file (JSON lines out; see --output)")
    x.add_argument("--field", default="text", help="JSONL field holding the text (default: text)")
    x.add_argument("--output", help="with --input: write the JSON lines to this file instead of stdout")
    x.add_argument("--compare", action="store_true",
                   help="two TEXTs: their cosine and the tokens that carry the overlap of their vocabulary distributions")
    x.add_argument("texts", nargs="*", metavar="TEXT")

    i = sub.add_parser("index", help="build a sparse (top-k LM-head tokens) + dense retrieval index of a corpus")
    _model_args(i)
    i.add_argument("--corpus", required=True, help=".txt (one document per line) or .jsonl (fields 'text', optional 'id')")
    i.add_argument("--field", default="text", help="JSONL field holding the text (default: text)")
    i.add_argument("--output", required=True, help="index folder to write")
    i.add_argument("--top-k", type=int, default=128, help="tokens kept per document (default: 128)")
    i.add_argument("--batch-size", type=int, default=32)

    s = sub.add_parser("search", help="rank the documents of an index for a query")
    s.add_argument("--index", required=True, help="folder written by 'text2token index'")
    s.add_argument("--query", required=True, action="append", help="query text (repeatable)")
    s.add_argument("--top", type=int, default=10, help="results per query (default: 10)")
    s.add_argument("--hybrid", type=float, metavar="ALPHA",
                   help="score = ALPHA·dense cosine + (1−ALPHA)·sparse dot product (default: sparse only)")
    s.add_argument("--dense", action="store_true", help="dense cosine only")
    s.add_argument("--json", action="store_true", help="print JSON lines")

    r = sub.add_parser("report", help="summarise a training run folder (stages, losses, hit rates, data, versions)")
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.add_argument("--plot", action="store_true", help="(re)draw RUN_DIR/training_curves.png")

    a = sub.add_parser("analyze", help="how training moved the vocabulary view and the representation (table + PNG)")
    _model_args(a)
    a.add_argument("--base", default="default", help="the untrained model to compare with (default: 'default')")
    a.add_argument("--input", required=True, help=".txt/.jsonl texts to analyse (a few hundred is plenty)")
    a.add_argument("--field", default="text")
    a.add_argument("--top-k", type=int, default=10, help="top tokens per text (default 10)")
    a.add_argument("--directions", type=int, default=10, help="top singular directions of the base embeddings (default 10)")
    a.add_argument("--output", help="write the figures as JSON here; the PNG goes next to it (default: analysis.png)")

    v = sub.add_parser("eval", help="evaluate on the bundled offline tasks")
    _model_args(v)
    v.add_argument("--suite", default="demo",
                   help="bundled offline tasks: demo (seeded subsets), quick (smaller subsets), held-out, or offline "
                        "(= full: all six tasks, complete) (default: demo)")
    v.add_argument("--mteb", metavar="BENCHMARK",
                   help="run an MTEB 2.x benchmark instead, e.g. 'MTEB(eng, v2)' (needs the datasets: hub or HF cache)")
    v.add_argument("--mteb-tasks", metavar="A,B,...", help="run these MTEB tasks, e.g. STSBenchmark,Banking77Classification")
    v.add_argument("--mteb-cache", metavar="DIR",
                   help="MTEB results cache (default: $TEXT2TOKEN_HOME/mteb-results); finished tasks are not rerun")
    v.add_argument("--prompts", metavar="FILE.json",
                   help="per-task / per-type prompts for MTEB, e.g. {\"query\": \"Query: \", \"STS\": \"...\"}")
    v.add_argument("--baseline", metavar="MODEL",
                   help="also evaluate this model with the same pooling/attention (e.g. the untrained 'default')")
    v.add_argument("--output", help="write the results as JSON to this file")
    v.add_argument("--card", action="store_true",
                   help="also record the results in the model folder (text2token_config.json and its README.md model card)")
    v.add_argument("--batch-size", type=int, default=32)
    return p


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default",
                   help="trained text2token folder, Hugging Face id or folder, .gguf file, or 'default'")
    p.add_argument("--pooling", choices=["mean", "last", "weighted_mean"], help="override the model's pooling")
    p.add_argument("--attention", choices=["causal", "bidirectional"], help="override the model's attention")
    p.add_argument("--max-length", type=int, help="override the maximum tokens per text")


def _load(args):
    from .model import Text2TokenModel

    from .training.checkpoint_model import is_checkpoint, load_checkpoint_model

    if is_checkpoint(args.model):
        return load_checkpoint_model(args.model)
    return Text2TokenModel.from_pretrained(args.model, pooling=args.pooling, attention=args.attention,
                                           max_length=args.max_length)


def cmd_train(args) -> int:
    from .layout import RUN_CONFIG_NAME
    from .training import load_config
    from .training.config import resume_config

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
        _note(args, f"resuming {run_dir} as recorded in {run_dir / RUN_CONFIG_NAME}")
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    from .training import train
    from .training.trainer import is_finished

    if args.resume and is_finished(config):
        print(f"{run_dir} is already finished ({', '.join(config.run_stages())}): nothing to do; the model is "
              f"{run_dir / 'model'} (give more steps, e.g. stage2.steps=N, to train further)")
        return 0
    model_dir = train(config, resume=args.resume)
    summary = json.loads((Path(config.output_dir) / "train_summary.json").read_text())
    per_stage = ", ".join(f"{k[6:]}: {v['steps']} steps at {v['seconds_per_step']} s/step"
                          for k, v in summary.items() if k.startswith("stage_"))
    print(f"model saved to {model_dir}  ({per_stage}; peak memory {summary['peak_memory_mb']:.0f} MB)")
    return 0


def _note(args, message: str) -> None:
    """A one-line note on stderr (silenced by --quiet)."""
    if not getattr(args, "quiet", False):
        print(f"text2token {args.command}: {message}", file=sys.stderr)


def cmd_encode(args) -> int:
    import numpy as np

    from .errors import Text2TokenError
    from .textio import atomic_path, read_texts_counted

    if args.batch_size < 1:
        raise Text2TokenError("--batch-size must be >= 1")
    if not args.output.endswith(".npy"):
        raise Text2TokenError(f"--output must end in .npy, got '{args.output}'")
    texts, counts = read_texts_counted(args.input, field=args.field, errors=args.errors)
    if counts["invalid_utf8_lines_replaced"]:
        print(f"note: {counts['invalid_utf8_lines_replaced']} lines of {args.input} had invalid UTF-8 "
              "(decoded with U+FFFD)", file=sys.stderr)
    model = _load(args)
    if truncated := model.count_truncated(texts):
        print(f"note: {truncated} of {len(texts)} texts are longer than {model.max_length} tokens and are truncated "
              "(--max-length to change)", file=sys.stderr)
    emb = model.encode(texts, batch_size=args.batch_size, normalize_embeddings=args.normalize, show_progress_bar=True)
    with atomic_path(args.output, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, emb)
    print(f"wrote {emb.shape[0]}×{emb.shape[1]} float32 embeddings to {args.output}")
    return 0


def cmd_explain(args) -> int:
    from .errors import Text2TokenError
    from .textio import atomic_path, read_texts

    if args.top_k < 1:
        raise Text2TokenError("--top-k must be >= 1")
    if args.input and args.texts:
        raise Text2TokenError("give TEXT arguments or --input FILE, not both")
    if args.compare and (args.input or len(args.texts) != 2):
        raise Text2TokenError("--compare takes exactly two TEXT arguments")
    if not args.input and not args.texts:
        raise Text2TokenError("nothing to explain: give TEXT arguments or --input FILE")
    if args.output and not args.input:
        raise Text2TokenError("--output goes with --input")
    texts = read_texts(args.input, field=args.field) if args.input else args.texts
    model = _load(args)
    if args.compare:
        result = model.compare(texts[0], texts[1], top_k=args.top_k)
        if args.json:
            print(json.dumps({"text_a": texts[0], "text_b": texts[1], **result}, ensure_ascii=False))
        else:
            print(f"A: {texts[0]}\nB: {texts[1]}")
            print(f"cosine {result['cosine']:.4f}; vocabulary overlap sum_v p_a*p_b = {result['overlap']:.4g}, carried by:")
            print(f"  {'share':>7}  {'p_a':>7}  {'p_b':>7}  token")
            for t in result["tokens"]:
                print(f"  {t['share']:7.1%}  {t['p_a']:7.4f}  {t['p_b']:7.4f}  {t['token']!r}")
        return 0
    explained = model.explain(texts, top_k=args.top_k)
    rows = (json.dumps({"text": text, "tokens": [{"token": t, "prob": p} for t, p in tokens]}, ensure_ascii=False)
            for text, tokens in zip(texts, explained))
    if args.input:
        if args.output:
            with atomic_path(args.output) as tmp:
                tmp.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
            print(f"wrote {len(texts)} explanations to {args.output}")
        else:
            for r in rows:
                print(r)
        return 0
    for text, tokens, row in zip(texts, explained, rows):
        if args.json:
            print(row)
        else:
            print(text)
            for tok, prob in tokens:
                print(f"  {prob:8.4f}  {tok!r}")
    return 0


def cmd_index(args) -> int:
    from .errors import Text2TokenError
    from .sparse_index import build_index
    from .textio import read_jsonl, read_texts

    if args.top_k < 1:
        raise Text2TokenError("--top-k must be >= 1")
    texts = read_texts(args.corpus, field=args.field)  # validates every line, naming file and line
    if Path(args.corpus).suffix.lower() == ".jsonl":
        ids = [str(r.get("id", n)) for n, r in enumerate(read_jsonl(args.corpus), start=1)]
    else:
        ids = [str(n) for n in range(1, len(texts) + 1)]
    if len(set(ids)) != len(ids):
        raise Text2TokenError(f"{args.corpus}: document ids are not unique")
    model = _load(args)
    summary = build_index(model, [{"id": i, "text": t} for i, t in zip(ids, texts)], args.output, top_k=args.top_k,
                          batch_size=args.batch_size, model_ref=str(Path(args.model).resolve()) if Path(args.model).exists()
                          else args.model)
    print(f"indexed {summary['documents']} documents into {args.output}: sparse {summary['sparse_bytes'] / 1024:.0f} KiB "
          f"({args.top_k} tokens each), dense {summary['dense_bytes'] / 1024:.0f} KiB")
    return 0


def cmd_search(args) -> int:
    from .errors import Text2TokenError
    from .sparse_index import SparseIndex

    if args.hybrid is not None and not 0 <= args.hybrid <= 1:
        raise Text2TokenError("--hybrid ALPHA must be in [0, 1]")
    if args.dense and args.hybrid is not None:
        raise Text2TokenError("--dense and --hybrid exclude each other")
    mode = "dense" if args.dense else "hybrid" if args.hybrid is not None else "sparse"
    index = SparseIndex(args.index)
    for query in args.query:
        hits = index.search(query, top=args.top, mode=mode, alpha=args.hybrid if args.hybrid is not None else 0.5)
        if args.json:
            print(json.dumps({"query": query, "mode": mode, "hits": hits}, ensure_ascii=False))
            continue
        print(f"query: {query}  ({mode})")
        for h in hits:
            print(f"  {h['rank']:3d}. {h['score']:.4f}  [{h['id']}] {h['text'][:100]}")
    return 0


def cmd_report(args) -> int:
    from .training.report import plot_training_curves, summarize_run

    print(summarize_run(args.run_dir))
    if args.plot:
        out = plot_training_curves(args.run_dir)
        print(f"  plot: {out}" if out else "  no training log to plot yet")
    return 0


def cmd_analyze(args) -> int:
    from .analysis import analyze, format_analysis
    from .errors import Text2TokenError
    from .model import Text2TokenModel
    from .textio import read_texts, write_json_atomic

    if args.top_k < 1 or args.directions < 1:
        raise Text2TokenError("--top-k and --directions must be >= 1")
    texts = read_texts(args.input, field=args.field)
    if len(texts) < 2:
        raise Text2TokenError(f"{args.input}: need at least 2 texts")
    trained = _load(args)
    base = Text2TokenModel.from_pretrained(args.base, pooling=trained.pooling, attention=trained.attention,
                                           template=trained.template, max_length=trained.max_length)
    png = Path(args.output).with_suffix(".png") if args.output else Path("analysis.png")
    result = analyze(trained, base, texts, top_k=args.top_k, directions=args.directions, png=png)
    print(format_analysis(result, args.model, args.base))
    print(f"\nplot: {png}")
    if args.output:
        write_json_atomic(args.output, result)
        print(f"figures: {args.output}")
    return 0


def cmd_eval(args) -> int:
    from .evaluation import evaluate_suite, format_table
    from .model import Text2TokenModel
    from .textio import write_json_atomic

    if args.mteb or args.mteb_tasks:
        return _eval_mteb(args)
    model = _load(args)
    columns = {}
    if args.baseline:
        base = Text2TokenModel.from_pretrained(args.baseline, pooling=model.pooling, attention=model.attention,
                                               template=model.template, max_length=model.max_length)
        print(f"evaluating baseline {args.baseline} ({model.pooling} pooling, {model.attention} attention)")
        columns[f"untrained ({args.baseline})" if args.baseline == "default" else args.baseline] = evaluate_suite(
            base, args.suite, batch_size=args.batch_size)
        del base
    print(f"evaluating {args.model}")
    columns[args.model] = evaluate_suite(model, args.suite, batch_size=args.batch_size)
    print()
    print(format_table(columns))
    if args.output:
        out = next(reversed(columns.values())) if len(columns) == 1 else {"models": columns}
        write_json_atomic(args.output, out)
        print(f"\nresults written to {args.output}")
    if args.card:
        from .errors import Text2TokenError
        from .layout import MODEL_CONFIG_NAME
        from .model_card import record_evaluation

        if not (Path(args.model) / MODEL_CONFIG_NAME).is_file():
            raise Text2TokenError(f"--card needs a saved text2token model folder; {args.model} has no {MODEL_CONFIG_NAME}")
        record_evaluation(args.model, columns[args.model])
        print(f"evaluation recorded in {Path(args.model) / 'README.md'}")
    return 0


def _eval_mteb(args) -> int:
    from .backbone import cache_dir
    from .errors import InputFileError, Text2TokenError
    from .evaluation.mteb_runner import MTEBEncoder, format_mteb_table, resolve_tasks, run_mteb
    from .textio import write_json_atomic

    if args.mteb and args.mteb_tasks:
        raise Text2TokenError("give either --mteb BENCHMARK or --mteb-tasks, not both")
    if args.baseline:
        raise Text2TokenError("--baseline works with the offline suite; for MTEB run eval once per model")
    tasks = resolve_tasks(args.mteb, [t.strip() for t in args.mteb_tasks.split(",") if t.strip()] if args.mteb_tasks else None)
    prompts = None
    if args.prompts:
        try:
            prompts = json.loads(Path(args.prompts).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputFileError(args.prompts, f"cannot read prompts JSON ({exc})") from None
        if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
            raise InputFileError(args.prompts, "expected a JSON object of name -> prompt string")
    encoder = MTEBEncoder(_load(args), prompts=prompts, batch_size=args.batch_size)
    cache = args.mteb_cache or str(cache_dir() / "mteb-results")
    print(f"running {len(tasks)} MTEB task(s) with {args.model} (results cache: {cache})")
    result = run_mteb(encoder, tasks, cache_dir=cache)
    print()
    print(format_mteb_table(result))
    if args.output:
        write_json_atomic(args.output, {"model": args.model, "benchmark": args.mteb, **result})
        print(f"\nresults written to {args.output}")
    return 0


# Commands whose trailing positional list may continue after options (``train … --objective simcse stage1.steps=5``).
_INTERMIXED = {"train": "overrides", "explain": "texts"}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; positionals of :data:`_INTERMIXED` commands may appear anywhere, also after options
    (argparse would otherwise take only the first run of them)."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    dest = _INTERMIXED.get(args.command)
    unknown = [x for x in extra if dest is None or x.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        setattr(args, dest, list(getattr(args, dest)) + extra)
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.version:
        from . import __version__

        print(f"text2token {__version__}")
        return 0
    if not args.command:
        _parser().print_help()
        return 2
    logging.basicConfig(level=logging.INFO if os.environ.get("TEXT2TOKEN_VERBOSE") else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from transformers.utils import logging as hf_logging

    import warnings

    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # raised inside peft, not actionable
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from .errors import Text2TokenError

    handler = {"train": cmd_train, "encode": cmd_encode, "explain": cmd_explain, "eval": cmd_eval, "index": cmd_index,
               "search": cmd_search, "report": cmd_report, "analyze": cmd_analyze}[args.command]
    try:
        return handler(args)
    except Text2TokenError as exc:
        print(f"text2token {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"text2token {args.command}: {exc or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

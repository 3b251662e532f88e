"""The ``text2token`` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from pathlib import Path

from .modes import (CHUNK_SIZE, SERVE_API_KEY_ENV, SERVE_HOST, SERVE_MAX_CHARS, SERVE_MAX_TEXTS, SERVE_PORT, AnnDtype,
                    Attention, Fusion, InputErrors, Objective, Pooling)
from .recipes import objectives_help

EXAMPLES = """examples:
  text2token train --config configs/demo.yaml --output runs/demo
  text2token train --output runs/demo --resume                     # continue the run as it was configured
  text2token train --objective simcse --output runs/simcse simcse.steps=50   # the LLM2Vec baseline
  text2token encode --model runs/demo/model --input texts.txt --output emb.npy --normalize
  text2token explain --model runs/demo/model "The cat sat on the mat."
  text2token eval --model runs/demo/model --suite demo --baseline default
  text2token index --model runs/demo/model --corpus docs.jsonl --output runs/demo/index
  text2token search --index runs/demo/index --query "interest rates"

several jobs on one machine:
  text2token lets idle OpenMP threads spin only briefly (GOMP_SPINCOUNT=10000 unless you set it or OMP_WAIT_POLICY),
  so two jobs on the same cores share them (~2.3x each, not ~8x); OMP_NUM_THREADS=N gives a job N threads.
"""
MODEL_HELP = ("the model: a trained text2token folder (e.g. runs/demo/model), a training checkpoint folder, a Hugging "
              "Face id or folder, a .gguf file, 'default' (the untrained bundled SmolLM2-135M) or 'gemma3-270m' "
              "(Gemma 3 270M, with the gemma extra)")
INPUT_HELP = ".txt (one text per line), .jsonl (one object per line with the text field), or - for standard input (text)"


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help that keeps the descriptions' line breaks and shows every option's default value (flags and
    options without one — off, or required — show none)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _positive(name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got '{text}'") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be >= 1, got {value}")
        return value
    return parse


def _max_length(text: str) -> int:
    value = _positive("--max-length")(text)
    if value < 8:
        raise argparse.ArgumentTypeError(f"--max-length must be >= 8 (the template and special tokens need room), "
                                         f"got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got '{text}'") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes on stderr (errors still)")
    p = argparse.ArgumentParser(
        prog="text2token",
        description="Turn a decoder-only LM into a text embedder by token target prediction (Text2Token).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def command(name, summary, description):
        return sub.add_parser(name, help=summary, description=f"{summary}.\n\n{description}", parents=[common],
                              formatter_class=_Formatter)

    t = command("train", "train an embedder (stage 1 data-driven, stage 2 model-derived targets)",
                "Train LoRA adapters so that softmax(lm_head(pooled)) matches each text's target: stage 1 (data) the\n"
                "text's own content tokens, stage 2 (model) tokens the frozen stage-1 model finds characteristic.\n"
                "Settings come from --config (YAML), then from section.key=value overrides (anywhere on the line);\n"
                "the resolved config is saved in the run folder. --resume continues a run as recorded in its\n"
                "config.yaml (only steps, checkpoint/log cadence and added stages may change).")
    t.add_argument("--config", help="YAML config file (default: built-in defaults)")
    t.add_argument("--output", help="run folder (overrides output_dir); the model goes to OUTPUT/model")
    t.add_argument("--stages", help="comma-separated stages to run: data (stage 1), model (stage 2); e.g. data,model")
    t.add_argument("--resume", action="store_true", help="continue the run in --output from its latest checkpoint")
    t.add_argument("--objective", choices=Objective.values(),
                   help=f"the training recipe — {objectives_help()}; same as objective=")
    t.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    t.add_argument("--errors", choices=InputErrors.values(),
                   help="invalid UTF-8 in the corpus: strict (error naming file and line) or replace (decode with "
                        "U+FFFD, count the lines in the run's data_report.json); same as data.errors=")
    t.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="config overrides, anywhere on the line, e.g. stage1.steps=20 stage2.tau=0.01 model.pooling=mean")

    e = command("encode", "embed texts",
                "Writes one row per input text, in input order: .npy (float32 matrix), .jsonl ({\"id\", \"embedding\"}\n"
                "per line; ids from the input's 'id' field or the row number from 0), or .parquet (columns id,\n"
                "embedding). The input is streamed in chunks and rows are written as they are computed, so memory\n"
                "does not grow with the corpus; the output appears under its name only when complete, and an\n"
                "interrupted run continues with --resume (the same bytes as an uninterrupted run).")
    _model_args(e)
    _input_args(e, "--input", required=True)
    e.add_argument("--output", required=True, help="output file: .npy, .jsonl or .parquet")
    e.add_argument("--batch-size", type=_positive("--batch-size"), default=32, help="texts per forward pass")
    e.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    e.add_argument("--prompt", help="text put before every input (e.g. 'query: '); see also --prompt-name")
    e.add_argument("--prompt-name", choices=["query", "document"],
                   help="a prompt saved with the model (text2token_config.json 'prompts')")
    e.add_argument("--resume", action="store_true",
                   help="continue an interrupted encode from its last written chunk (file input, .npy or .jsonl output)")
    e.add_argument("--chunk-size", type=_positive("--chunk-size"), default=CHUNK_SIZE,
                   help="texts read, encoded and written at a time (memory and resume granularity)")

    x = command("explain", "show the top LM-head tokens of each text's embedding",
                "The top-k tokens of softmax(lm_head(embedding)): what the embedding 'means'. --compare shows why\n"
                "two texts are similar: their cosine and the tokens carrying sum_v p_a(v)·p_b(v).")
    _model_args(x)
    x.add_argument("--top-k", type=_positive("--top-k"), default=10, help="tokens per text (at most the vocabulary size)")
    x.add_argument("--json", action="store_true", help="print JSON lines instead of a readable list")
    _input_args(x, "--input", required=False, help="explain every text of this file (JSON lines out, with the input's "
                                                    "ids; see --output). " + INPUT_HELP)
    x.add_argument("--output", help="with --input: write the JSON lines to this file instead of stdout")
    x.add_argument("--compare", action="store_true",
                   help="two TEXTs: their cosine and the tokens that carry the overlap of their vocabulary distributions")
    x.add_argument("texts", nargs="*", metavar="TEXT", help="texts to explain")

    i = command("index", "build a hybrid (sparse LM-head tokens + dense) retrieval index of a corpus",
                "Each document becomes its dense embedding and its top-k LM-head tokens, weighted by p/(p+prior) with\n"
                "the corpus prior of the indexed documents (one pass over the corpus).\n"
                "The index records the model by its path relative to the index (and absolute), so index and model\n"
                "can move together; 'search --model' relocates it. The corpus is streamed: memory does not grow with\n"
                "it, progress is saved after every chunk, and --resume continues an interrupted build.")
    _model_args(i)
    _input_args(i, "--corpus", required=True, help=".txt (one document per line, ids 0, 1, ...) or .jsonl (fields "
                                                    "'text' and optional 'id'), or - for standard input")
    i.add_argument("--output", required=True, help="index folder to write")
    i.add_argument("--top-k", type=_positive("--top-k"), default=256, help="tokens kept per document")
    i.add_argument("--query-top-k", type=_positive("--query-top-k"), default=256,
                   help="tokens each query is expanded to at search time (stored in the index)")
    i.add_argument("--batch-size", type=_positive("--batch-size"), default=32, help="documents per forward pass")
    i.add_argument("--ann", choices=["auto", "on", "off"], default="auto",
                   help="also build an approximate-nearest-neighbour graph of the dense vectors (usearch HNSW) for "
                        "fast search over large corpora: auto = from 20,000 documents on; off = exact search only")
    i.add_argument("--ann-dtype", choices=AnnDtype.values(), default="f16",
                   help="precision of the graph's vectors: f16 (half of float32's bytes), i8 (a quarter), b1 (one sign "
                        "bit per dimension, 1/32); search rescores the graph's candidates by the float vectors")
    i.add_argument("--resume", action="store_true",
                   help="continue an interrupted index build (OUTPUT.partial) from its last written chunk (file input)")
    i.add_argument("--chunk-size", type=_positive("--chunk-size"), default=CHUNK_SIZE,
                   help="documents read, encoded and written at a time (memory and resume granularity)")

    e = command("export", "copy an index into a vector database, or a model to ONNX / OpenVINO",
                "An index into Qdrant (--index with --qdrant-path or --qdrant-url): each document becomes a point with\n"
                "a named dense vector 'dense' (cosine), a named sparse vector 'sparse' (its LM-head tokens) and its id\n"
                "and text as payload; --qdrant-path writes Qdrant's local mode (a folder, no server), --qdrant-url a\n"
                "running server. Needs: pip install 'text2token[qdrant]'.\n"
                "A model to ONNX or OpenVINO (--model with --onnx DIR or --openvino DIR): one graph from token ids to the\n"
                "pooled vector, the tokenizer and text2token_export.json; the export is checked against encode (cosine\n"
                ">= 0.9999) before the folder appears; embed with text2token.onnx_export.ExportedEmbedder. --int8 adds\n"
                "an int8 dynamically quantised ONNX graph. Needs: pip install 'text2token[onnx]'.")
    e.add_argument("--index", help="folder written by 'text2token index' (with --qdrant-path / --qdrant-url)")
    e.add_argument("--model", help="the model to export (with --onnx / --openvino): " + MODEL_HELP)
    where = e.add_mutually_exclusive_group(required=True)
    where.add_argument("--qdrant-path", metavar="DIR", help="a Qdrant local-mode folder (created if missing)")
    where.add_argument("--qdrant-url", metavar="URL", help="a Qdrant server, e.g. http://localhost:6333")
    where.add_argument("--onnx", metavar="DIR", help="write the model as ONNX (onnxruntime) into DIR")
    where.add_argument("--openvino", metavar="DIR", help="write the model as OpenVINO IR into DIR")
    e.add_argument("--int8", action="store_true", help="with --onnx: also write model_int8.onnx (int8 dynamic "
                                                       "quantisation of the weights, onnxruntime)")
    e.add_argument("--collection", default="text2token", help="Qdrant collection name (replaced if it exists)")

    s = command("search", "rank the documents of an index for queries",
                "Hybrid by default: the dense cosine and the sparse token overlap, each min-max rescaled per query,\n"
                "mixed with equal weights (measured best on the bundled retrieval task's dev half; see docs/benchmarks.md). The\n"
                "model is loaded once for all queries (--query repeatable, --queries FILE).")
    s.add_argument("--index", required=True, help="folder written by 'text2token index'")
    s.add_argument("--query", action="append", default=[], help="query text (repeatable)")
    s.add_argument("--queries", metavar="FILE", help="more queries, one per line (.txt) or .jsonl, or - for stdin")
    s.add_argument("--top", type=_positive("--top"), default=10, help="results per query")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--hybrid", type=_fraction, metavar="ALPHA", default=0.5,
                      help="weight of the dense side in the hybrid score (1: dense only, 0: sparse only)")
    mode.add_argument("--dense", action="store_true", help="dense cosine only")
    mode.add_argument("--sparse", action="store_true", help="sparse token overlap only")
    s.add_argument("--fusion", choices=Fusion.values(), default=Fusion.MINMAX.value,
                   help="how hybrid combines the two: rrf (reciprocal-rank fusion, ALPHA/(60+dense rank) + "
                        "(1−ALPHA)/(60+sparse rank)), minmax (each score rescaled to [0, 1] per query, then mixed), "
                        "raw (unscaled mix)")
    s.add_argument("--model", help="the index's model at another path (checked against the recorded weights)")
    s.add_argument("--exact", action="store_true", help="score every document even if the index has an ANN graph")
    s.add_argument("--no-rescore", action="store_true",
                   help="with an ANN graph, dense search: rank by the graph's own (f16/i8/b1) scores instead of "
                        "rescoring its candidates by the float vectors")
    _device_args(s)
    s.add_argument("--json", action="store_true", help="print JSON lines")

    r = command("report", "summarise a training run folder", "Stages, steps, losses, hit rates, data, versions.")
    r.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by 'text2token train'")
    r.add_argument("--plot", action="store_true", help="(re)draw RUN_DIR/training_curves.png")

    a = command("analyze", "how training moved the vocabulary view and the representation (table + PNG)",
                "Compares a trained model with its base on your texts: how much of each text's top tokens are its\n"
                "own tokens vs beyond the text, and the variance along the base's top singular directions.")
    _model_args(a)
    a.add_argument("--base", default="default", help="the untrained model to compare with")
    _input_args(a, "--input", required=True, help="texts to analyse (a few hundred is plenty). " + INPUT_HELP)
    a.add_argument("--top-k", type=_positive("--top-k"), default=10, help="top tokens per text")
    a.add_argument("--directions", type=_positive("--directions"), default=10,
                   help="top singular directions of the base embeddings (at most min(texts, hidden size))")
    a.add_argument("--output", help="write the figures as JSON here; the PNG goes next to it (else analysis.png)")

    v = command("eval", "evaluate on the bundled offline tasks or MTEB",
                "The bundled suites run offline; --mteb / --mteb-tasks run MTEB 2.x (needs the datasets: hub or HF\n"
                "cache). --baseline evaluates a second model with the same pooling, attention and template.")
    _model_args(v)
    v.add_argument("--suite", default="demo",
                   help="bundled offline tasks: demo (seeded subsets), quick (smaller subsets), dev (all ten tasks, "
                        "seeded subsets: what studies choose on), held-out, or offline (= full: the first six tasks, "
                        "complete); scored by mteb's own evaluators")
    v.add_argument("--remove-directions", type=int, default=0, metavar="K",
                   help="project the LM head's top-K directions out of every embedding before scoring (a post-hoc "
                        "filter; 0 = off), for the model and the --baseline alike")
    v.add_argument("--classification-protocol", choices=["mteb", "all-train"], default="mteb",
                   help="bundled classification tasks: mteb = MTEB's few-shot protocol (8 examples per label, 10 "
                        "experiments); all-train = one classifier fit on every training row (less variance)")
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
    v.add_argument("--batch-size", type=_positive("--batch-size"), default=32, help="texts per forward pass")
    sv = command("serve", "serve a model over an OpenAI-compatible HTTP API (POST /v1/embeddings, via LitServe)",
                 "Starts LitServe with the model loaded in each worker; the vectors are encode's own (template, pooling,\n"
                 "truncation), L2-normalised. Closed by default: binds to 127.0.0.1; another --host needs an API key\n"
                 "(--api-key-file or $TEXT2TOKEN_API_KEY; clients send 'Authorization: Bearer KEY'). Requests are\n"
                 "bounded (--max-texts, --max-chars): a 413 names the bound. Needs: pip install 'text2token[serve]'.")
    sv.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    sv.add_argument("--host", default=SERVE_HOST, help="address to bind (0.0.0.0: every interface; needs a key)")
    sv.add_argument("--port", type=_positive("--port"), default=SERVE_PORT, help="TCP port")
    sv.add_argument("--api-key-file", metavar="FILE",
                    help=f"file whose first line is the API key (else ${SERVE_API_KEY_ENV}; neither: no key)")
    sv.add_argument("--no-api-key", action="store_true",
                    help="allow a --host beyond this machine without an API key (e.g. behind your own gateway)")
    sv.add_argument("--max-texts", type=_positive("--max-texts"), default=SERVE_MAX_TEXTS,
                    help="texts per request, at most")
    sv.add_argument("--max-chars", type=_positive("--max-chars"), default=SERVE_MAX_CHARS,
                    help="characters per text, at most")
    sv.add_argument("--batch-size", type=_positive("--batch-size"), default=32, help="texts per forward pass")
    sv.add_argument("--max-batch-size", type=_positive("--max-batch-size"), default=1,
                    help="> 1: batch up to this many concurrent requests into one forward pass (LitServe's dynamic "
                         "batching; each request must then carry one text)")
    sv.add_argument("--batch-timeout", type=float, default=0.01,
                    help="with --max-batch-size > 1: seconds a batch waits to fill")
    sv.add_argument("--workers", type=_positive("--workers"), default=1, help="model workers (each holds a copy)")
    _device_args(sv)
    return p


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--pooling", choices=Pooling.values(), help="override the model's pooling")
    p.add_argument("--attention", choices=Attention.values(), help="override the model's attention")
    p.add_argument("--max-length", type=_max_length, help="override the maximum tokens per text (>= 8)")
    _device_args(p)


def _device(text: str) -> str:
    """A torch device this machine has (argparse type): a malformed name or an absent accelerator is one line."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build of torch" if torch.version.cuda is None else "no CUDA device is visible"
            raise argparse.ArgumentTypeError(f"'{text}': this machine cannot run CUDA ({build}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"'{text}': only {torch.cuda.device_count()} CUDA device(s) visible")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"'{text}': MPS is not available on this machine; use --device cpu")
    elif device.type == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise argparse.ArgumentTypeError(f"'{text}': no XPU on this machine; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise argparse.ArgumentTypeError(f"'{text}': device type '{device.type}' is not supported here (cpu, cuda, mps)")
    return text


def _device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", type=_device,
                   help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available, else cpu)")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                   help="weights' dtype (auto: bfloat16 on GPU, float32 on CPU); the LM head always runs in float32")


def _input_args(p: argparse.ArgumentParser, flag: str, required: bool, help: str = INPUT_HELP) -> None:
    p.add_argument(flag, required=required, help=help)
    p.add_argument("--field", default="text", help="JSONL field holding the text")
    p.add_argument("--skip-blank", action="store_true", help="skip blank lines instead of refusing the file")
    p.add_argument("--errors", choices=InputErrors.values(), default="strict",
                   help="invalid UTF-8: strict (error naming the line) or replace (U+FFFD, counted)")


def _dtype(args):
    import torch

    return {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]


def _load(args):
    from .model import Text2TokenModel
    from .training.checkpoint_model import is_checkpoint, load_checkpoint_model

    if is_checkpoint(args.model):
        return load_checkpoint_model(args.model)
    model = Text2TokenModel.from_pretrained(args.model, pooling=args.pooling, attention=args.attention,
                                            max_length=args.max_length, device=args.device, dtype=_dtype(args))
    if not model.is_trained:
        _note(args, f"{args.model} is an untrained backbone ({model.pooling} pooling, {model.attention} attention), "
                    "not a text2token-trained model")
    return model


def _read(args, path: str):
    """``(ids, texts)`` of an input file (see :func:`text2token.textio.read_records`), with notes on repaired lines."""
    from .textio import read_records

    ids, texts, counts = read_records(path, field=args.field, skip_blank=args.skip_blank, errors=args.errors)
    _input_notes(args, path, counts)
    return ids, texts


def _input_notes(args, path: str, counts: dict) -> None:
    if counts["invalid_utf8_lines_replaced"]:
        _note(args, f"{counts['invalid_utf8_lines_replaced']} lines of {path} had invalid UTF-8 (decoded with U+FFFD)")
    if counts["blank_lines_skipped"]:
        _note(args, f"{counts['blank_lines_skipped']} blank lines of {path} skipped")


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
    elif args.resume and not args.config:  # nothing to resume and nothing to start from but the built-in defaults
        from .errors import ConfigError

        held = (", ".join(sorted(p.name for p in run_dir.iterdir())[:8]) or "nothing") if run_dir.is_dir() else None
        raise ConfigError(f"--resume: {run_dir} holds no run (no {RUN_CONFIG_NAME}; "
                          + (f"it holds {held}" if held is not None else "no such folder")
                          + "); check the path, or give --config to start a new run there")
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
    model_dir = train(config, resume=args.resume, show_progress_bar=not args.quiet)
    summary = json.loads((Path(config.output_dir) / "train_summary.json").read_text())
    per_stage = ", ".join(f"{k[6:]}: {v['steps']} steps at {v['seconds_per_step']} s/step"
                          for k, v in summary.items() if k.startswith("stage_"))
    print(f"model saved to {model_dir}  ({per_stage}; peak memory {summary['peak_memory_mb']:.0f} MB)")
    return 0


def _note(args, message: str) -> None:
    """A one-line note on stderr (silenced by --quiet)."""
    if not getattr(args, "quiet", False):
        print(f"text2token {args.command}: {message}", file=sys.stderr)


def _output_folder(path: str) -> None:
    """Create the folder an output file goes in; a folder that cannot be made or written is one line."""
    from .errors import Text2TokenError

    parent = Path(path).expanduser().absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise Text2TokenError(f"--output {path}: a file stands where its folder should be ({parent})") from None
    except OSError as exc:
        raise Text2TokenError(f"--output {path}: cannot create the folder {parent} ({exc.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise Text2TokenError(f"--output {path}: the folder {parent} is not writable")


def cmd_encode(args) -> int:
    from .errors import Text2TokenError
    from .streaming import FORMATS, Source, encode_file

    if Path(args.output).suffix.lower() not in FORMATS:
        raise Text2TokenError(f"--output must end in .npy, .jsonl or .parquet, got '{args.output}'")
    if args.input != "-" and Path(args.output).expanduser().resolve() == Path(args.input).expanduser().resolve():
        raise Text2TokenError(f"--output {args.output} is the input file: choose another output (it would be overwritten)")
    source = Source(args.input, args.field, args.skip_blank, args.errors)  # every line checked before the model loads
    _output_folder(args.output)  # created (as explain, index and export do) and checked before the model loads
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under accelerate launch: each process on its own device
        from .streaming import process_group

        state = process_group()
        args.device = args.device or str(state.device)
        args.quiet = args.quiet or not state.is_main_process
    _input_notes(args, args.input, source.counts)
    model = _load(args)
    prompt = args.prompt
    if args.prompt_name:
        if args.prompt:
            raise Text2TokenError("give --prompt or --prompt-name, not both")
        if args.prompt_name not in model.prompts:
            raise Text2TokenError(f"{args.model} has no prompt named '{args.prompt_name}' "
                                  f"(prompts: {', '.join(sorted(model.prompts)) or 'none'})")
        prompt = model.prompts[args.prompt_name]
    summary = encode_file(model, source, args.output, batch_size=args.batch_size, normalize=args.normalize,
                          prompt=prompt, resume=args.resume, chunk=args.chunk_size, show_progress_bar=not args.quiet)
    if summary["truncated"]:
        _note(args, f"{summary['truncated']} of {summary['rows']} texts are longer than {model.max_length} tokens and "
                    "are truncated (--max-length to change)")
    resumed = f" (resumed at row {summary['resumed_from']})" if summary["resumed_from"] else ""
    _note(args, f"wrote {summary['rows']}×{summary['dim']} float32 embeddings to {args.output}{resumed}")
    return 0


def cmd_explain(args) -> int:
    from .errors import Text2TokenError
    from .textio import atomic_path

    if args.input and args.texts:
        raise Text2TokenError("give TEXT arguments or --input FILE, not both")
    if args.compare and (args.input or len(args.texts) != 2):
        raise Text2TokenError("--compare takes exactly two TEXT arguments")
    if not args.input and not args.texts:
        raise Text2TokenError("nothing to explain: give TEXT arguments or --input FILE")
    if args.output and not args.input:
        raise Text2TokenError("--output goes with --input")
    ids, texts = _read(args, args.input) if args.input else (None, args.texts)
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
    rows = [json.dumps({**({"id": ids[n]} if ids else {}), "text": text,
                        "tokens": [{"token": t, "prob": p} for t, p in tokens]}, ensure_ascii=False)
            for n, (text, tokens) in enumerate(zip(texts, explained))]
    if args.input:
        if args.output:
            with atomic_path(args.output) as tmp:
                tmp.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
            _note(args, f"wrote {len(texts)} explanations to {args.output}")
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
    from .retrieval.build import build_index
    from .streaming import Source

    source = Source(args.corpus, args.field, args.skip_blank, args.errors)  # every line checked before the model loads
    source.check_unique_ids()
    _input_notes(args, args.corpus, source.counts)
    model = _load(args)
    summary = build_index(model, source, args.output, top_k=args.top_k, batch_size=args.batch_size,
                          model_ref=args.model, show_progress_bar=not args.quiet, ann=args.ann,
                          query_top_k=args.query_top_k, resume=args.resume, chunk=args.chunk_size,
                          ann_dtype=args.ann_dtype)
    ann = (f", ANN graph ({summary['ann']['dtype']}) {summary['ann']['bytes'] / 1024:.0f} KiB"
           if summary.get("ann") else "")
    print(f"indexed {summary['documents']} documents into {args.output}: sparse {summary['sparse_bytes'] / 1024:.0f} KiB "
          f"({args.top_k} tokens each), dense {summary['dense_bytes'] / 1024:.0f} KiB{ann}")
    return 0


def cmd_search(args) -> int:
    from .errors import Text2TokenError
    from .retrieval import SearchIndex

    from .textio import read_records

    queries = list(args.query)
    if args.queries:
        queries += read_records(args.queries, skip_blank=True)[1]
    if not queries:
        raise Text2TokenError("nothing to search for: give --query TEXT (repeatable) or --queries FILE")
    mode = "dense" if args.dense else "sparse" if args.sparse else "hybrid"
    index = SearchIndex(args.index, model_path=args.model, device=args.device, dtype=_dtype(args))
    if not args.model:  # a path recorded in the index: say which model answers
        _note(args, f"model: {index.model_source} (recorded in {Path(args.index) / 'index.json'}; --model to change)")
    results = index.search(queries, top=args.top, mode=mode, alpha=args.hybrid, fusion=args.fusion, exact=args.exact,
                           rescore=not args.no_rescore)
    label = f"hybrid α={args.hybrid:g}, {args.fusion}" if mode == "hybrid" else mode
    for query, hits in zip(queries, results):
        if args.json:
            print(json.dumps({"query": query, "mode": mode, "hits": hits}, ensure_ascii=False))
            continue
        print(f"query: {query}  ({label})")
        for h in hits:
            print(f"  {h['rank']:3d}. {h['score']:.4f}  [{h['id']}] {h['text'][:100]}")
    return 0


def cmd_export(args) -> int:
    from .errors import ConfigError

    if args.int8 and not args.onnx:
        raise ConfigError("--int8 goes with --onnx")
    if args.onnx or args.openvino:
        if not args.model or args.index:
            raise ConfigError("--onnx / --openvino export a model: give --model (and no --index)")
        from .model import Text2TokenModel
        from .onnx_export import export

        model = Text2TokenModel.from_pretrained(args.model, device="cpu", dtype=None)
        folder = args.onnx or args.openvino
        info = export(model, folder, onnx=bool(args.onnx), int8=args.int8, openvino=bool(args.openvino))
        checks = ", ".join(f"{k} cosine {v:.6f}" for k, v in info["check_cosine"].items())
        print(f"exported {args.model} to {folder} ({', '.join(info['files'].values())}; checked against encode: "
              f"{checks})")
        return 0
    if not args.index or args.model:
        raise ConfigError("--qdrant-path / --qdrant-url export an index: give --index (and no --model)")
    from .retrieval import SearchIndex
    from .retrieval.qdrant import export_qdrant, qdrant_client

    index = SearchIndex(args.index, load_model=False)
    client = qdrant_client(path=args.qdrant_path, url=args.qdrant_url)
    summary = export_qdrant(index, client, args.collection, show_progress_bar=not args.quiet)
    client.close()
    print(f"exported {summary['points']} documents of {args.index} to Qdrant collection '{args.collection}' at "
          f"{args.qdrant_path or args.qdrant_url} (vectors 'dense' ({summary['dense_size']}, cosine) and 'sparse')")
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
    from .textio import write_json_atomic

    texts = _read(args, args.input)[1]
    if len(texts) < 2:
        raise Text2TokenError(f"{args.input}: need at least 2 texts")
    trained = _load(args)
    most = min(len(texts), trained.backbone.config.hidden_size)
    if args.directions > most:
        raise Text2TokenError(f"--directions {args.directions} is more than min(texts, hidden size) = {most}")
    base = Text2TokenModel.from_pretrained(args.base, pooling=trained.pooling, attention=trained.attention,
                                           template=trained.template, max_length=trained.max_length,
                                           device=args.device, dtype=_dtype(args))
    png = Path(args.output).with_suffix(".png") if args.output else Path("analysis.png")
    result = analyze(trained, base, texts, top_k=args.top_k, directions=args.directions, png=png)
    print(format_analysis(result, args.model, args.base))
    print(f"\nplot: {png}")
    if args.output:
        write_json_atomic(args.output, result)
        print(f"figures: {args.output}")
    return 0


def cmd_serve(args) -> int:
    from .backbone import check_hub_id, resolve_model_path
    from .serving import build_server, check_exposure, read_api_key

    api_key = read_api_key(args.api_key_file)
    check_exposure(args.host, api_key, args.no_api_key)
    model = resolve_model_path(args.model)  # converted once here, not by each worker
    if model == args.model and not Path(model).exists():
        check_hub_id(model)
    server = build_server(model, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                          max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout, workers=args.workers,
                          api_key=api_key, max_texts=args.max_texts, max_chars=args.max_chars)
    _note(args, f"serving {args.model} at http://{args.host}:{args.port}/v1/embeddings"
                + (" (API key required)" if api_key else ""))
    server.run(host=args.host, port=args.port, generate_client_file=False,
               log_level="warning" if args.quiet else "info")
    return 0


def cmd_eval(args) -> int:
    from .evaluation import evaluate_suite, format_table
    from .model import Text2TokenModel
    from .textio import write_json_atomic

    if args.mteb or args.mteb_tasks:
        return _eval_mteb(args)
    if args.remove_directions and args.card:
        from .errors import Text2TokenError

        raise Text2TokenError("--card records the saved model's own scores; it cannot be combined with "
                              "--remove-directions (the folder does not apply that filter)")
    model = _load(args)
    columns = {}
    if args.baseline:
        base = Text2TokenModel.from_pretrained(args.baseline, pooling=model.pooling, attention=model.attention,
                                               template=model.template, max_length=model.max_length,
                                               device=args.device, dtype=_dtype(args))
        base.remove_head_directions(args.remove_directions)
        print(f"evaluating baseline {args.baseline} ({model.pooling} pooling, {model.attention} attention)")
        columns[f"untrained ({args.baseline})" if args.baseline == "default" else args.baseline] = evaluate_suite(
            base, args.suite, batch_size=args.batch_size, classification=args.classification_protocol)
        del base
    model.remove_head_directions(args.remove_directions)
    print(f"evaluating {args.model}" + (f" (LM head's top {args.remove_directions} direction(s) removed)"
                                        if args.remove_directions else ""))
    columns[args.model] = evaluate_suite(model, args.suite, batch_size=args.batch_size,
                                         classification=args.classification_protocol)
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


# The machine's disk, not text2token, failed: one line (outputs are written atomically, so nothing half-written
# appears under the output's name, and train/encode/index keep their checkpoints or partial progress).
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


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
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:  # Ctrl-C at any moment, start-up included: one line, exit 130
        command = next((a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("-")), "")
        print(f"text2token {command}: {str(exc) or 'interrupted'}".replace("  ", " "), file=sys.stderr)
        return 130


def run() -> None:
    """The console entry point (``text2token``, ``python -m text2token``): :func:`main`'s status as the exit code.

    After Ctrl-C the process ends with ``os._exit(130)``: CPython marks a KeyboardInterrupt that passed through
    ``exec`` of source text (as dataclass and namedtuple creation do while modules import) as unhandled even when
    it is caught later, and would then end the process by re-raising SIGINT (status -2 to a parent process)."""
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


def _main(argv: list[str] | None) -> int:
    args = _parse(argv)
    if args.version:
        from .version import __version__

        print(f"text2token {__version__}")
        return 0
    if not args.command:
        _parser().print_help()
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # text2token's own notes (e.g. "resumed from checkpoint N") show unless --quiet
    logging.getLogger("text2token").setLevel(logging.WARNING if args.quiet else logging.INFO)
    if os.environ.get("TEXT2TOKEN_VERBOSE"):
        logging.getLogger().setLevel(logging.INFO)
    quiet_before = os.environ.get("TEXT2TOKEN_QUIET")
    if args.quiet:
        os.environ["TEXT2TOKEN_QUIET"] = "1"  # progress bars off everywhere (text2token.progress)
    from transformers.utils import logging as hf_logging

    import warnings

    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # raised inside peft, not actionable
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from .errors import Text2TokenError

    handler = {"train": cmd_train, "encode": cmd_encode, "explain": cmd_explain, "eval": cmd_eval, "index": cmd_index,
               "search": cmd_search, "export": cmd_export, "report": cmd_report, "analyze": cmd_analyze,
               "serve": cmd_serve}[args.command]
    try:
        return handler(args)
    except Text2TokenError as exc:
        print(f"text2token {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in _DISK_ERRORS:
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        resume = " (work saved so far is kept: rerun with --resume)" if args.command in ("train", "encode", "index") \
            else ""
        print(f"text2token {args.command}: error: {exc.strerror or os.strerror(exc.errno)}{where}{resume}",
              file=sys.stderr)
        return 2
    finally:
        if quiet_before is None:
            os.environ.pop("TEXT2TOKEN_QUIET", None)
        else:
            os.environ["TEXT2TOKEN_QUIET"] = quiet_before


if __name__ == "__main__":
    run()

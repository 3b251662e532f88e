"""The ``text2token`` argument parser: every command, its options, their help and defaults."""

from __future__ import annotations

import argparse

from ..modes import (
    CHUNK_SIZE,
    SERVE_API_KEY_ENV,
    SERVE_HOST,
    SERVE_MAX_CHARS,
    SERVE_MAX_TEXTS,
    SERVE_PORT,
    AnnDtype,
    Attention,
    Fusion,
    InputErrors,
    Objective,
    Pooling,
)
from ..recipes import objectives_help
from .argtypes import device_arg, fraction, max_length_arg, positive

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
MODEL_HELP = (
    "the model: a trained text2token folder (e.g. runs/demo/model), a training checkpoint folder, a Hugging "
    "Face id or folder, a .gguf file, 'default' (the untrained bundled SmolLM2-135M) or 'gemma3-270m' "
    "(Gemma 3 270M, with the gemma extra)"
)
INPUT_HELP = (
    ".txt (one text per line), .jsonl (one object per line with the text field), or - for standard input (text)"
)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help that keeps the descriptions' line breaks and shows every option's default value (flags and
    options without one — off, or required — show none)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes on stderr (errors still)")
    p = argparse.ArgumentParser(
        prog="text2token",
        description="Turn a decoder-only LM into a text embedder by token target prediction (Text2Token).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def command(name, summary, description):
        return sub.add_parser(
            name, help=summary, description=f"{summary}.\n\n{description}", parents=[common], formatter_class=_Formatter
        )

    t = command(
        "train",
        "train an embedder (stage 1 data-driven, stage 2 model-derived targets)",
        "Train LoRA adapters so that softmax(lm_head(pooled)) matches each text's target: stage 1 (data) the\n"
        "text's own content tokens, stage 2 (model) tokens the frozen stage-1 model finds characteristic.\n"
        "Settings come from --config (YAML), then from section.key=value overrides (anywhere on the line);\n"
        "the resolved config is saved in the run folder. --resume continues a run as recorded in its\n"
        "config.yaml (only steps, checkpoint/log cadence and added stages may change).",
    )
    t.add_argument("--config", help="YAML config file (default: built-in defaults)")
    t.add_argument("--output", help="run folder (overrides output_dir); the model goes to OUTPUT/model")
    t.add_argument("--stages", help="comma-separated stages to run: data (stage 1), model (stage 2); e.g. data,model")
    t.add_argument("--resume", action="store_true", help="continue the run in --output from its latest checkpoint")
    t.add_argument(
        "--objective", choices=Objective.values(), help=f"the training recipe — {objectives_help()}; same as objective="
    )
    t.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    t.add_argument(
        "--errors",
        choices=InputErrors.values(),
        help="invalid UTF-8 in the corpus: strict (error naming file and line) or replace (decode with "
        "U+FFFD, count the lines in the run's data_report.json); same as data.errors=",
    )
    t.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="config overrides, anywhere on the line, e.g. stage1.steps=20 stage2.tau=0.01 model.pooling=mean",
    )

    e = command(
        "encode",
        "embed texts",
        'Writes one row per input text, in input order: .npy (float32 matrix), .jsonl ({"id", "embedding"}\n'
        "per line; ids from the input's 'id' field or the row number from 0), or .parquet (columns id,\n"
        "embedding). The input is streamed in chunks and rows are written as they are computed, so memory\n"
        "does not grow with the corpus; the output appears under its name only when complete, and an\n"
        "interrupted run continues with --resume (the same bytes as an uninterrupted run).",
    )
    model_args(e)
    input_args(e, "--input", required=True)
    e.add_argument("--output", required=True, help="output file: .npy, .jsonl or .parquet")
    e.add_argument("--batch-size", type=positive("--batch-size"), default=32, help="texts per forward pass")
    e.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    e.add_argument("--prompt", help="text put before every input (e.g. 'query: '); see also --prompt-name")
    e.add_argument(
        "--prompt-name",
        choices=["query", "document"],
        help="a prompt saved with the model (text2token_config.json 'prompts')",
    )
    e.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted encode from its last written chunk (file input, .npy or .jsonl output)",
    )
    e.add_argument(
        "--chunk-size",
        type=positive("--chunk-size"),
        default=CHUNK_SIZE,
        help="texts read, encoded and written at a time (memory and resume granularity)",
    )

    x = command(
        "explain",
        "show the top LM-head tokens of each text's embedding",
        "The top-k tokens of softmax(lm_head(embedding)): what the embedding 'means'. --compare shows why\n"
        "two texts are similar: their cosine and the tokens carrying sum_v p_a(v)·p_b(v).",
    )
    model_args(x)
    x.add_argument(
        "--top-k", type=positive("--top-k"), default=10, help="tokens per text (at most the vocabulary size)"
    )
    x.add_argument("--json", action="store_true", help="print JSON lines instead of a readable list")
    input_args(
        x,
        "--input",
        required=False,
        help="explain every text of this file (JSON lines out, with the input's ids; see --output). " + INPUT_HELP,
    )
    x.add_argument("--output", help="with --input: write the JSON lines to this file instead of stdout")
    x.add_argument(
        "--compare",
        action="store_true",
        help="two TEXTs: their cosine and the tokens that carry the overlap of their vocabulary distributions",
    )
    x.add_argument("texts", nargs="*", metavar="TEXT", help="texts to explain")

    i = command(
        "index",
        "build a hybrid (sparse LM-head tokens + dense) retrieval index of a corpus",
        "Each document becomes its dense embedding and its top-k LM-head tokens, weighted by p/(p+prior) with\n"
        "the corpus prior of the indexed documents (one pass over the corpus).\n"
        "The index records the model by its path relative to the index (and absolute), so index and model\n"
        "can move together; 'search --model' relocates it. The corpus is streamed: memory does not grow with\n"
        "it, progress is saved after every chunk, and --resume continues an interrupted build.",
    )
    model_args(i)
    input_args(
        i,
        "--corpus",
        required=True,
        help=".txt (one document per line, ids 0, 1, ...) or .jsonl (fields "
        "'text' and optional 'id'), or - for standard input",
    )
    i.add_argument("--output", required=True, help="index folder to write")
    i.add_argument("--top-k", type=positive("--top-k"), default=256, help="tokens kept per document")
    i.add_argument(
        "--query-top-k",
        type=positive("--query-top-k"),
        default=256,
        help="tokens each query is expanded to at search time (stored in the index)",
    )
    i.add_argument("--batch-size", type=positive("--batch-size"), default=32, help="documents per forward pass")
    i.add_argument(
        "--ann",
        choices=["auto", "on", "off"],
        default="auto",
        help="also build an approximate-nearest-neighbour graph of the dense vectors (usearch HNSW) for "
        "fast search over large corpora: auto = from 20,000 documents on; off = exact search only",
    )
    i.add_argument(
        "--ann-dtype",
        choices=AnnDtype.values(),
        default="f16",
        help="precision of the graph's vectors: f16 (half of float32's bytes), i8 (a quarter), b1 (one sign "
        "bit per dimension, 1/32); search rescores the graph's candidates by the float vectors",
    )
    i.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted index build (OUTPUT.partial) from its last written chunk (file input)",
    )
    i.add_argument(
        "--chunk-size",
        type=positive("--chunk-size"),
        default=CHUNK_SIZE,
        help="documents read, encoded and written at a time (memory and resume granularity)",
    )

    e = command(
        "export",
        "copy an index into a vector database, or a model to ONNX / OpenVINO",
        "An index into Qdrant (--index with --qdrant-path or --qdrant-url): each document becomes a point with\n"
        "a named dense vector 'dense' (cosine), a named sparse vector 'sparse' (its LM-head tokens) and its id\n"
        "and text as payload; --qdrant-path writes Qdrant's local mode (a folder, no server), --qdrant-url a\n"
        "running server. Needs: pip install 'text2token[qdrant]'.\n"
        "A model to ONNX or OpenVINO (--model with --onnx DIR or --openvino DIR): one graph from token ids to the\n"
        "pooled vector, the tokenizer and text2token_export.json; the export is checked against encode (cosine\n"
        ">= 0.9999) before the folder appears; embed with text2token.onnx_export.ExportedEmbedder. --int8 adds\n"
        "an int8 dynamically quantised ONNX graph. Needs: pip install 'text2token[onnx]'.",
    )
    e.add_argument("--index", help="folder written by 'text2token index' (with --qdrant-path / --qdrant-url)")
    e.add_argument("--model", help="the model to export (with --onnx / --openvino): " + MODEL_HELP)
    where = e.add_mutually_exclusive_group(required=True)
    where.add_argument("--qdrant-path", metavar="DIR", help="a Qdrant local-mode folder (created if missing)")
    where.add_argument("--qdrant-url", metavar="URL", help="a Qdrant server, e.g. http://localhost:6333")
    where.add_argument("--onnx", metavar="DIR", help="write the model as ONNX (onnxruntime) into DIR")
    where.add_argument("--openvino", metavar="DIR", help="write the model as OpenVINO IR into DIR")
    e.add_argument(
        "--int8",
        action="store_true",
        help="with --onnx: also write model_int8.onnx (int8 dynamic quantisation of the weights, onnxruntime)",
    )
    e.add_argument("--collection", default="text2token", help="Qdrant collection name (replaced if it exists)")

    s = command(
        "search",
        "rank the documents of an index for queries",
        "Hybrid by default: the dense cosine and the sparse token overlap, each min-max rescaled per query,\n"
        "mixed with equal weights (measured best on the bundled retrieval task's dev half; see docs/benchmarks.md). The\n"
        "model is loaded once for all queries (--query repeatable, --queries FILE).",
    )
    s.add_argument("--index", required=True, help="folder written by 'text2token index'")
    s.add_argument("--query", action="append", default=[], help="query text (repeatable)")
    s.add_argument("--queries", metavar="FILE", help="more queries, one per line (.txt) or .jsonl, or - for stdin")
    s.add_argument("--top", type=positive("--top"), default=10, help="results per query")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument(
        "--hybrid",
        type=fraction,
        metavar="ALPHA",
        default=0.5,
        help="weight of the dense side in the hybrid score (1: dense only, 0: sparse only)",
    )
    mode.add_argument("--dense", action="store_true", help="dense cosine only")
    mode.add_argument("--sparse", action="store_true", help="sparse token overlap only")
    s.add_argument(
        "--fusion",
        choices=Fusion.values(),
        default=Fusion.MINMAX.value,
        help="how hybrid combines the two: rrf (reciprocal-rank fusion, ALPHA/(60+dense rank) + "
        "(1−ALPHA)/(60+sparse rank)), minmax (each score rescaled to [0, 1] per query, then mixed), "
        "raw (unscaled mix)",
    )
    s.add_argument("--model", help="the index's model at another path (checked against the recorded weights)")
    s.add_argument("--exact", action="store_true", help="score every document even if the index has an ANN graph")
    s.add_argument(
        "--no-rescore",
        action="store_true",
        help="with an ANN graph, dense search: rank by the graph's own (f16/i8/b1) scores instead of "
        "rescoring its candidates by the float vectors",
    )
    device_args(s)
    s.add_argument("--json", action="store_true", help="print JSON lines")

    r = command("report", "summarise a training run folder", "Stages, steps, losses, hit rates, data, versions.")
    r.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by 'text2token train'")
    r.add_argument("--plot", action="store_true", help="(re)draw RUN_DIR/training_curves.png")

    a = command(
        "analyze",
        "how training moved the vocabulary view and the representation (table + PNG)",
        "Compares a trained model with its base on your texts: how much of each text's top tokens are its\n"
        "own tokens vs beyond the text, and the variance along the base's top singular directions.",
    )
    model_args(a)
    a.add_argument("--base", default="default", help="the untrained model to compare with")
    input_args(a, "--input", required=True, help="texts to analyse (a few hundred is plenty). " + INPUT_HELP)
    a.add_argument("--top-k", type=positive("--top-k"), default=10, help="top tokens per text")
    a.add_argument(
        "--directions",
        type=positive("--directions"),
        default=10,
        help="top singular directions of the base embeddings (at most min(texts, hidden size))",
    )
    a.add_argument("--output", help="write the figures as JSON here; the PNG goes next to it (else analysis.png)")

    v = command(
        "eval",
        "evaluate on the bundled offline tasks or MTEB",
        "The bundled suites run offline; --mteb / --mteb-tasks run MTEB 2.x (needs the datasets: hub or HF\n"
        "cache). --baseline evaluates a second model with the same pooling, attention and template.",
    )
    model_args(v)
    v.add_argument(
        "--suite",
        default="demo",
        help="bundled offline tasks: demo (seeded subsets), quick (smaller subsets), dev (all ten tasks, "
        "seeded subsets: what studies choose on), held-out, or offline (= full: the first six tasks, "
        "complete); scored by mteb's own evaluators",
    )
    v.add_argument(
        "--remove-directions",
        type=int,
        default=0,
        metavar="K",
        help="project the LM head's top-K directions out of every embedding before scoring (a post-hoc "
        "filter; 0 = off), for the model and the --baseline alike",
    )
    v.add_argument(
        "--classification-protocol",
        choices=["mteb", "all-train"],
        default="mteb",
        help="bundled classification tasks: mteb = MTEB's few-shot protocol (8 examples per label, 10 "
        "experiments); all-train = one classifier fit on every training row (less variance)",
    )
    v.add_argument(
        "--mteb",
        metavar="BENCHMARK",
        help="run an MTEB 2.x benchmark instead, e.g. 'MTEB(eng, v2)' (needs the datasets: hub or HF cache)",
    )
    v.add_argument(
        "--mteb-tasks", metavar="A,B,...", help="run these MTEB tasks, e.g. STSBenchmark,Banking77Classification"
    )
    v.add_argument(
        "--mteb-cache",
        metavar="DIR",
        help="MTEB results cache (default: $TEXT2TOKEN_HOME/mteb-results); finished tasks are not rerun",
    )
    v.add_argument(
        "--prompts",
        metavar="FILE.json",
        help='per-task / per-type prompts for MTEB, e.g. {"query": "Query: ", "STS": "..."}',
    )
    v.add_argument(
        "--baseline",
        metavar="MODEL",
        help="also evaluate this model with the same pooling/attention (e.g. the untrained 'default')",
    )
    v.add_argument("--output", help="write the results as JSON to this file")
    v.add_argument(
        "--card",
        action="store_true",
        help="also record the results in the model folder (text2token_config.json and its README.md model card)",
    )
    v.add_argument("--batch-size", type=positive("--batch-size"), default=32, help="texts per forward pass")
    sv = command(
        "serve",
        "serve a model over an OpenAI-compatible HTTP API (POST /v1/embeddings, via LitServe)",
        "Starts LitServe with the model loaded in each worker; the vectors are encode's own (template, pooling,\n"
        "truncation), L2-normalised. Closed by default: binds to 127.0.0.1; another --host needs an API key\n"
        "(--api-key-file or $TEXT2TOKEN_API_KEY; clients send 'Authorization: Bearer KEY'). Requests are\n"
        "bounded (--max-texts, --max-chars): a 413 names the bound. Needs: pip install 'text2token[serve]'.",
    )
    sv.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    sv.add_argument("--host", default=SERVE_HOST, help="address to bind (0.0.0.0: every interface; needs a key)")
    sv.add_argument("--port", type=positive("--port"), default=SERVE_PORT, help="TCP port")
    sv.add_argument(
        "--api-key-file",
        metavar="FILE",
        help=f"file whose first line is the API key (else ${SERVE_API_KEY_ENV}; neither: no key)",
    )
    sv.add_argument(
        "--no-api-key",
        action="store_true",
        help="allow a --host beyond this machine without an API key (e.g. behind your own gateway)",
    )
    sv.add_argument(
        "--max-texts", type=positive("--max-texts"), default=SERVE_MAX_TEXTS, help="texts per request, at most"
    )
    sv.add_argument(
        "--max-chars", type=positive("--max-chars"), default=SERVE_MAX_CHARS, help="characters per text, at most"
    )
    sv.add_argument("--batch-size", type=positive("--batch-size"), default=32, help="texts per forward pass")
    sv.add_argument(
        "--max-batch-size",
        type=positive("--max-batch-size"),
        default=1,
        help="> 1: batch up to this many concurrent requests into one forward pass (LitServe's dynamic "
        "batching; each request must then carry one text)",
    )
    sv.add_argument(
        "--batch-timeout", type=float, default=0.01, help="with --max-batch-size > 1: seconds a batch waits to fill"
    )
    sv.add_argument("--workers", type=positive("--workers"), default=1, help="model workers (each holds a copy)")
    device_args(sv)
    return p


def model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--pooling", choices=Pooling.values(), help="override the model's pooling")
    p.add_argument("--attention", choices=Attention.values(), help="override the model's attention")
    p.add_argument("--max-length", type=max_length_arg, help="override the maximum tokens per text (>= 8)")
    device_args(p)


def device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", type=device_arg, help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available, else cpu)"
    )
    p.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        default="auto",
        help="weights' dtype (auto: bfloat16 on GPU, float32 on CPU); the LM head always runs in float32",
    )


def input_args(p: argparse.ArgumentParser, flag: str, required: bool, help: str = INPUT_HELP) -> None:
    p.add_argument(flag, required=required, help=help)
    p.add_argument("--field", default="text", help="JSONL field holding the text")
    p.add_argument("--skip-blank", action="store_true", help="skip blank lines instead of refusing the file")
    p.add_argument(
        "--errors",
        choices=InputErrors.values(),
        default="strict",
        help="invalid UTF-8: strict (error naming the line) or replace (U+FFFD, counted)",
    )

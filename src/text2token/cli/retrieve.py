"""``index``, ``search`` and ``export``: a searchable index of a corpus, queries against it, and exports of a
model (ONNX, OpenVINO) or an index (Qdrant)."""

from __future__ import annotations

import json

from ..modes import CHUNK_SIZE, PASSAGE_OVERLAP, AnnDtype, Fusion
from .argtypes import at_least, fraction, positive
from .arguments import MODEL_HELP, device_args, input_args, model_args
from .common import input_notes, load_model, note, torch_dtype


def cmd_index(args) -> int:
    from ..errors import ConfigError
    from ..resumable import Source
    from ..retrieval.build import build_index

    if args.passage_overlap is not None and not args.passages:
        raise ConfigError("--passage-overlap goes with --passages")
    source = Source(args.corpus, args.field, args.skip_blank, args.errors)  # every line checked before the model loads
    source.check_unique_ids()
    input_notes(args, args.corpus, source.counts)
    model = load_model(args)
    summary = build_index(
        model,
        source,
        args.output,
        top_k=args.top_k,
        batch_size=args.batch_size,
        model_ref=args.model,
        show_progress_bar=not args.quiet,
        ann=args.ann,
        query_top_k=args.query_top_k,
        resume=args.resume,
        chunk=args.chunk_size,
        ann_dtype=args.ann_dtype,
        passages=args.passages,
        passage_overlap=args.passage_overlap,
    )
    if summary["documents_truncated"]:
        note(
            args,
            f"{summary['documents_truncated']} of {summary['documents']} documents are longer than "
            f"{model.max_length} tokens: only their first {model.max_length} are indexed, so text past that is "
            "not found (--max-length to change, up to the backbone's window; or index long documents as passages)",
        )
    ann = (
        f", ANN graph ({summary['ann']['dtype']}) {summary['ann']['bytes'] / 1024:.0f} KiB"
        if summary.get("ann")
        else ""
    )
    passages = summary.get("passages")
    what = (
        f"{passages['documents']} documents as {summary['documents']} passages ({passages['split']} documents split)"
        if passages
        else f"{summary['documents']} documents"
    )
    print(
        f"indexed {what} into {args.output}: sparse {summary['sparse_bytes'] / 1024:.0f} KiB "
        f"({args.top_k} tokens each), dense {summary['dense_bytes'] / 1024:.0f} KiB{ann}"
    )
    return 0


def cmd_search(args) -> int:
    from ..errors import Text2TokenError
    from ..retrieval import SearchIndex
    from ..textio import read_records

    queries = list(args.query)
    if args.queries:
        queries += read_records(args.queries, skip_blank=True)[1]
    if not queries:
        raise Text2TokenError("nothing to search for: give --query TEXT (repeatable) or --queries FILE")
    mode = "dense" if args.dense else "sparse" if args.sparse else "hybrid"
    index = SearchIndex(args.index, model_path=args.model, device=args.device, dtype=torch_dtype(args))
    # (a model path taken from the index is said once, by SearchIndex, before it is loaded)
    results = index.search(
        queries,
        top=args.top,
        mode=mode,
        alpha=args.hybrid,
        fusion=args.fusion,
        exact=args.exact,
        rescore=not args.no_rescore,
    )
    label = f"hybrid α={args.hybrid:g}, {args.fusion}" if mode == "hybrid" else mode
    if mode != "sparse" and index.ann is not None:  # how the dense side was searched
        label += ", exact" if args.exact else ", ANN" + (" without rescoring" if args.no_rescore else "")
    for query, hits in zip(queries, results):
        if args.json:
            print(json.dumps({"query": query, "mode": mode, "hits": hits}, ensure_ascii=False))
            continue
        print(f"query: {query}  ({label})")
        for h in hits:
            where = f"{h['id']}, passage {h['passage']}" if "passage" in h else h["id"]
            print(f"  {h['rank']:3d}. {h['score']:.4f}  [{where}] {h['text'][:100]}")
    return 0


def cmd_export(args) -> int:
    from ..errors import ConfigError

    if args.int8 and not args.onnx:
        raise ConfigError("--int8 goes with --onnx")
    if args.onnx or args.openvino:
        if not args.model or args.index:
            raise ConfigError("--onnx / --openvino export a model: give --model (and no --index)")
        from ..model import Text2TokenModel
        from ..onnx_export import export

        model = Text2TokenModel.from_pretrained(args.model, device="cpu", dtype=None)
        folder = args.onnx or args.openvino
        info = export(
            model, folder, onnx=bool(args.onnx), int8=args.int8, openvino=bool(args.openvino), show_progress=True
        )
        checks = ", ".join(f"{k} cosine {v:.6f}" for k, v in info["check_cosine"].items())
        print(
            f"exported {args.model} to {folder} ({', '.join(info['files'].values())}; checked against encode: {checks})"
        )
        return 0
    if not args.index or args.model:
        raise ConfigError("--qdrant-path / --qdrant-url export an index: give --index (and no --model)")
    from ..retrieval import SearchIndex
    from ..retrieval.qdrant import export_qdrant, qdrant_client

    index = SearchIndex(args.index, load_model=False)
    client = qdrant_client(path=args.qdrant_path, url=args.qdrant_url)
    summary = export_qdrant(index, client, args.collection, show_progress_bar=not args.quiet)
    client.close()
    print(
        f"exported {summary['points']} documents of {args.index} to Qdrant collection '{args.collection}' at "
        f"{args.qdrant_path or args.qdrant_url} (vectors 'dense' ({summary['dense_size']}, cosine) and 'sparse')"
    )
    return 0


def add_index(command) -> None:
    """The ``index`` command's arguments."""
    p = command(
        "index",
        "build a hybrid (sparse LM-head tokens + dense) retrieval index of a corpus",
        "Each document becomes its dense embedding and its top-k LM-head tokens, weighted by p/(p+prior) with\n"
        "the corpus prior of the indexed documents (one pass over the corpus).\n"
        "The index records the model by its path relative to the index (and absolute), so index and model\n"
        "can move together; 'search --model' relocates it. The corpus is streamed: memory does not grow with\n"
        "it, progress is saved after every chunk, and --resume continues an interrupted build.",
    )
    model_args(p)
    input_args(
        p,
        "--corpus",
        required=True,
        help=".txt (one document per line, ids 0, 1, ...) or .jsonl (fields "
        "'text' and optional 'id'), or - for standard input",
    )
    p.add_argument("--output", required=True, help="index folder to write")
    p.add_argument("--top-k", type=positive("--top-k"), default=256, help="tokens kept per document")
    p.add_argument(
        "--query-top-k",
        type=positive("--query-top-k"),
        default=256,
        help="tokens each query is expanded to at search time (stored in the index)",
    )
    p.add_argument("--batch-size", type=positive("--batch-size"), default=32, help="documents per forward pass")
    p.add_argument(
        "--ann",
        choices=["auto", "on", "off"],
        default="auto",
        help="also build an approximate-nearest-neighbour graph of the dense vectors (usearch HNSW) for "
        "fast search over large corpora: auto = from 20,000 documents on; off = exact search only",
    )
    p.add_argument(
        "--ann-dtype",
        choices=AnnDtype.values(),
        default="f16",
        help="precision of the graph's vectors: f16 (half of float32's bytes), i8 (a quarter), b1 (one sign "
        "bit per dimension, 1/32); search rescores the graph's candidates by the float vectors",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted index build (OUTPUT.partial) from its last written chunk (file input)",
    )
    p.add_argument(
        "--chunk-size",
        type=positive("--chunk-size"),
        default=CHUNK_SIZE,
        help="documents read, encoded and written at a time (memory and resume granularity)",
    )
    p.add_argument(
        "--passages",
        action="store_true",
        help="split documents longer than the model's window into passages that fit it (on paragraph, sentence "
        "or word boundaries, by the model's tokenizer) and index each; search ranks documents by their best "
        "passage and shows it. Without it a long document is indexed by its first --max-length tokens",
    )
    p.add_argument(
        "--passage-overlap",
        type=at_least("--passage-overlap", 0),
        default=None,
        help=f"tokens neighbouring passages may share (default {PASSAGE_OVERLAP}, at most a quarter of a passage)",
    )


def add_export(command) -> None:
    """The ``export`` command's arguments."""
    p = command(
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
    p.add_argument("--index", help="folder written by 'text2token index' (with --qdrant-path / --qdrant-url)")
    p.add_argument("--model", help="the model to export (with --onnx / --openvino): " + MODEL_HELP)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--qdrant-path", metavar="DIR", help="a Qdrant local-mode folder (created if missing)")
    where.add_argument("--qdrant-url", metavar="URL", help="a Qdrant server, e.g. http://localhost:6333")
    where.add_argument("--onnx", metavar="DIR", help="write the model as ONNX (onnxruntime) into DIR")
    where.add_argument("--openvino", metavar="DIR", help="write the model as OpenVINO IR into DIR")
    p.add_argument(
        "--int8",
        action="store_true",
        help="with --onnx: also write model_int8.onnx (int8 dynamic quantisation of the weights, onnxruntime)",
    )
    p.add_argument("--collection", default="text2token", help="Qdrant collection name (replaced if it exists)")


def add_search(command) -> None:
    """The ``search`` command's arguments."""
    p = command(
        "search",
        "rank the documents of an index for queries",
        "Hybrid by default: the dense cosine and the sparse token overlap, each min-max rescaled per query,\n"
        "mixed with equal weights (measured best on the bundled retrieval task's dev half; see docs/benchmarks.md). The\n"
        "model is loaded once for all queries (--query repeatable, --queries FILE).",
    )
    p.add_argument("--index", required=True, help="folder written by 'text2token index'")
    p.add_argument("--query", action="append", default=[], help="query text (repeatable)")
    p.add_argument("--queries", metavar="FILE", help="more queries, one per line (.txt) or .jsonl, or - for stdin")
    p.add_argument("--top", type=positive("--top"), default=10, help="results per query")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--hybrid",
        type=fraction,
        metavar="ALPHA",
        default=0.5,
        help="weight of the dense side in the hybrid score (1: dense only, 0: sparse only)",
    )
    mode.add_argument("--dense", action="store_true", help="dense cosine only")
    mode.add_argument("--sparse", action="store_true", help="sparse token overlap only")
    p.add_argument(
        "--fusion",
        choices=Fusion.values(),
        default=Fusion.MINMAX.value,
        help="how hybrid combines the two: rrf (reciprocal-rank fusion, ALPHA/(60+dense rank) + "
        "(1−ALPHA)/(60+sparse rank)), minmax (each score rescaled to [0, 1] per query, then mixed), "
        "raw (unscaled mix)",
    )
    p.add_argument("--model", help="the index's model at another path (checked against the recorded weights)")
    p.add_argument("--exact", action="store_true", help="score every document even if the index has an ANN graph")
    p.add_argument(
        "--no-rescore",
        action="store_true",
        help="with an ANN graph, dense search: rank by the graph's own (f16/i8/b1) scores instead of "
        "rescoring its candidates by the float vectors",
    )
    device_args(p)
    p.add_argument("--json", action="store_true", help="print JSON lines")

"""``index``, ``search`` and ``export``: a searchable index of a corpus, queries against it, and exports of a
model (ONNX, OpenVINO) or an index (Qdrant)."""

from __future__ import annotations

import json
from pathlib import Path

from .common import input_notes, load_model, note, torch_dtype


def cmd_index(args) -> int:
    from ..resumable import Source
    from ..retrieval.build import build_index

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
    )
    ann = (
        f", ANN graph ({summary['ann']['dtype']}) {summary['ann']['bytes'] / 1024:.0f} KiB"
        if summary.get("ann")
        else ""
    )
    print(
        f"indexed {summary['documents']} documents into {args.output}: sparse {summary['sparse_bytes'] / 1024:.0f} KiB "
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
    if not args.model:  # a path recorded in the index: say which model answers
        note(args, f"model: {index.model_source} (recorded in {Path(args.index) / 'index.json'}; --model to change)")
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
    for query, hits in zip(queries, results):
        if args.json:
            print(json.dumps({"query": query, "mode": mode, "hits": hits}, ensure_ascii=False))
            continue
        print(f"query: {query}  ({label})")
        for h in hits:
            print(f"  {h['rank']:3d}. {h['score']:.4f}  [{h['id']}] {h['text'][:100]}")
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
        info = export(model, folder, onnx=bool(args.onnx), int8=args.int8, openvino=bool(args.openvino))
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

"""Dense vs sparse (top-k LM-head tokens) vs hybrid retrieval from one model, on the bundled
WordNet definition-retrieval task: nDCG@10 of each, index size, and query latency.

    python benchmarks/retrieval.py --model runs/demo/model          # the full task: 500 queries × 3,000 docs
    python benchmarks/retrieval.py --model runs/demo/model --quick  # 200 queries × 1,000 docs (the demo subset)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path



def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="text2token model folder, hub id, or 'default'")
    p.add_argument("--quick", action="store_true", help="the demo subset (200 queries × 1,000 documents)")
    p.add_argument("--top-k", type=int, default=128, help="tokens per sparse vector (default 128)")
    p.add_argument("--alpha", type=float, default=0.5, help="hybrid weight of the dense score (default 0.5)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)

    from text2token import Text2TokenModel
    from text2token.evaluation.suite import load_task, ndcg_at_10
    from text2token.sparse_index import SparseIndex, build_index

    task = load_task("WordNetNounDefinitionRetrieval", limit=200 if args.quick else None)
    queries, corpus, qrels = task.data["queries"], task.data["corpus"], task.data["qrels"]
    model = Text2TokenModel.from_pretrained(args.model)
    print(f"{args.model}: {model.pooling} pooling, {model.attention}; {len(queries)} queries × {len(corpus)} documents")
    with tempfile.TemporaryDirectory() as d:
        info = build_index(model, [{"id": c["id"], "text": c["text"]} for c in corpus], Path(d) / "index",
                           top_k=args.top_k, model_ref=args.model, show_progress_bar=False)
        index = SparseIndex(Path(d) / "index", model=model)
        qtexts = [q["text"] for q in queries]
        qids, dids = [q["id"] for q in queries], [c["id"] for c in corpus]
        rows = {}
        for mode in ("dense", "sparse", "hybrid"):
            index.scores(qtexts[:4], mode, args.alpha)  # warm-up
            t0 = time.perf_counter()
            scores = index.scores(qtexts, mode, args.alpha)
            total = time.perf_counter() - t0
            rows[mode] = {"ndcg_at_10": round(100 * ndcg_at_10(scores, qids, dids, qrels), 2),
                          "ms_per_query_batched": round(1000 * total / len(qtexts), 2)}
        # Scoring alone (query vectors already computed): what the index costs per query.
        qs = index.model.encode(qtexts, normalize_embeddings=True)
        from text2token.sparse_index import sparse_vectors

        qsp = sparse_vectors(index.model, qtexts, args.top_k)
        t0 = time.perf_counter()
        _ = qs @ index.dense.T
        rows["dense"]["ms_scoring_per_query"] = round(1000 * (time.perf_counter() - t0) / len(qtexts), 4)
        t0 = time.perf_counter()
        _ = (qsp @ index.sparse.T).toarray()
        rows["sparse"]["ms_scoring_per_query"] = round(1000 * (time.perf_counter() - t0) / len(qtexts), 4)
    result = {"model": args.model, "queries": len(queries), "documents": len(corpus), "top_k": args.top_k,
              "alpha": args.alpha, "modes": rows, "sparse_bytes": info["sparse_bytes"], "dense_bytes": info["dense_bytes"],
              "sparse_over_dense_ndcg": round(rows["sparse"]["ndcg_at_10"] / rows["dense"]["ndcg_at_10"], 3),
              "sparse_over_dense_bytes": round(info["sparse_bytes"] / info["dense_bytes"], 3)}
    print("\n| mode | nDCG@10 | ms/query (encode + score) | ms/query (score only) |\n|---|---|---|---|")
    for mode, r in rows.items():
        print(f"| {mode} | {r['ndcg_at_10']:.2f} | {r['ms_per_query_batched']:.1f} | {r.get('ms_scoring_per_query', '–')} |")
    print(f"\nsparse/dense nDCG@10 = {result['sparse_over_dense_ndcg']:.2f}; index size sparse {info['sparse_bytes'] / 1024:.0f} KiB "
          f"vs dense {info['dense_bytes'] / 1024:.0f} KiB ({result['sparse_over_dense_bytes']:.2f}×)")
    if args.json:
        from text2token.textio import write_json_atomic

        write_json_atomic(args.json, result)
        print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

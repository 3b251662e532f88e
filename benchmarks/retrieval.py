"""Dense vs sparse (aligned LM-head tokens) vs hybrid retrieval from one model, on the bundled WordNet
definition-retrieval task (500 queries × 3,000 documents, one relevant document per query): nDCG@10 and P@10 of
each mode, index size and query time — on the dev half (queries 0–249, where settings are chosen), the test half
(250–499, never used to choose) and all.

``--sweep`` also scores the grid the defaults were chosen from: sparse weighting (plain probability p vs the
prior ratio p/(p+π)), document tokens K, query tokens M, and hybrid fusion × α — from one encoding pass (every
text's top-1,024 tokens), ranked by dev nDCG@10.

    python benchmarks/retrieval.py --model runs/demo/model --sweep --json benchmarks/results/retrieval.json
    python benchmarks/retrieval.py --model runs/demo/model --quick   # 200 queries × 1,000 documents
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def precision_at_10(scores, qids, dids, qrels) -> float:
    relevant = {}
    for r in qrels:
        if float(r["score"]) > 0:
            relevant.setdefault(r["query_id"], set()).add(r["doc_id"])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    return float(np.mean([len({dids[d] for d in row} & relevant.get(q, set())) / 10 for q, row in zip(qids, top)]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="text2token model folder, hub id, or 'default'")
    p.add_argument("--quick", action="store_true", help="the demo subset (200 queries × 1,000 documents)")
    p.add_argument("--sweep", action="store_true", help="also score the weighting × K × M × fusion × α grid")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)

    from text2token import Text2TokenModel
    from text2token.evaluation.suite import load_task, ndcg_at_10
    from text2token.modes import Fusion
    from text2token.retrieval import DEFAULT_ALPHA, DEFAULT_FUSION, SearchIndex, TopTokens, build_index, fuse

    task = load_task("WordNetNounDefinitionRetrieval", limit=200 if args.quick else None)
    queries, corpus, qrels = task.data["queries"], task.data["corpus"], task.data["qrels"]
    model = Text2TokenModel.from_pretrained(args.model)
    print(f"{args.model}: {model.pooling} pooling, {model.attention}; {len(queries)} queries × {len(corpus)} documents")
    qtexts = [q["text"] for q in queries]
    qids, dids = [q["id"] for q in queries], [c["id"] for c in corpus]
    half = len(queries) // 2
    splits = {"dev": slice(0, half), "test": slice(half, None), "all": slice(None)}

    def row(scores, score_ms=None):
        out = {name: round(100 * ndcg_at_10(scores[s], qids[s], dids, qrels), 2) for name, s in splits.items()}
        out["p_at_10"] = round(100 * precision_at_10(scores, qids, dids, qrels), 2)
        if score_ms is not None:
            out["ms_scoring_per_query"] = round(score_ms, 4)
        return out

    with tempfile.TemporaryDirectory() as d:
        info = build_index(
            model,
            [{"id": c["id"], "text": c["text"]} for c in corpus],
            Path(d) / "index",
            model_ref=args.model,
            show_progress_bar=False,
        )
        index = SearchIndex(Path(d) / "index", model=model)
        index.query_vectors(qtexts[:4])  # warm-up
        t0 = time.perf_counter()
        q_dense, q_sparse = index.query_vectors(qtexts)  # one pass: both query vectors
        encode_ms = 1000 * (time.perf_counter() - t0) / len(qtexts)
        t0 = time.perf_counter()
        dense = q_dense @ np.asarray(index.dense).T
        dense_ms = 1000 * (time.perf_counter() - t0) / len(qtexts)
        t0 = time.perf_counter()
        sparse = (q_sparse @ index.sparse.T).toarray()
        sparse_ms = 1000 * (time.perf_counter() - t0) / len(qtexts)
        modes = {
            "dense": row(dense, dense_ms),
            "sparse": row(sparse, sparse_ms),
            f"hybrid {DEFAULT_FUSION} α={DEFAULT_ALPHA:g} (default)": row(fuse(dense, sparse), dense_ms + sparse_ms),
        }
    result = {
        "model": args.model,
        "queries": len(queries),
        "documents": len(corpus),
        "top_k": info["top_k"],
        "query_top_k": info["query_top_k"],
        "weighting": info["weighting"],
        "modes": modes,
        "query_encode_ms_per_query": round(encode_ms, 2),
        "sparse_bytes": info["sparse_bytes"],
        "dense_bytes": info["dense_bytes"],
        "sparse_over_dense_ndcg": round(modes["sparse"]["all"] / modes["dense"]["all"], 3),
        "sparse_over_dense_bytes": round(info["sparse_bytes"] / info["dense_bytes"], 3),
    }
    print("\n| mode | nDCG@10 dev | test | all | P@10 | ms/query scoring |\n|---|---|---|---|---|---|")
    for mode, r in modes.items():
        print(
            f"| {mode} | {r['dev']:.2f} | {r['test']:.2f} | {r['all']:.2f} | {r['p_at_10']:.2f} | "
            f"{r['ms_scoring_per_query']:.4f} |"
        )
    print(
        f"\nquery encoding (dense + sparse, one pass): {encode_ms:.1f} ms/query; sparse/dense nDCG@10 = "
        f"{result['sparse_over_dense_ndcg']:.2f}; index size sparse {info['sparse_bytes'] / 1024:.0f} KiB vs dense "
        f"{info['dense_bytes'] / 1024:.0f} KiB ({result['sparse_over_dense_bytes']:.2f}×)"
    )

    if args.sweep:
        docs_top = TopTokens(model, [c["text"] for c in corpus], 1024)
        query_top = TopTokens(model, qtexts, 1024, desc="queries")
        prior = docs_top.prior()
        grid = []
        for weighting in ("prob", "prior_ratio"):
            for k in (128, 256, 512, 1024):
                docs = docs_top.sparse(weighting, prior, k)
                for m in (64, 128, 256, 512, 1024):
                    scores = (query_top.sparse(weighting, prior, m) @ docs.T).toarray()
                    entry = {"weighting": weighting, "K": k, "M": m, "sparse": row(scores)}
                    for fusion in Fusion.values():
                        for alpha in (0.3, 0.5, 0.7, 0.9):
                            entry[f"{fusion} α={alpha:g}"] = row(fuse(dense, scores, alpha, fusion))
                    grid.append(entry)
        grid.sort(key=lambda e: -e["sparse"]["dev"])
        result["sweep"] = grid
        print("\nsweep, best sparse settings by dev nDCG@10 (dev / test / all):")
        for e in grid[:6]:
            best = max((k for k in e if "α=" in k), key=lambda k: e[k]["dev"])
            print(
                f"  {e['weighting']:11s} K={e['K']:4d} M={e['M']:4d}: sparse {e['sparse']['dev']:.2f} / "
                f"{e['sparse']['test']:.2f} / {e['sparse']['all']:.2f}; best hybrid {best}: {e[best]['dev']:.2f} / "
                f"{e[best]['test']:.2f} / {e[best]['all']:.2f}"
            )
        plain = max((e for e in grid if e["weighting"] == "prob"), key=lambda e: e["sparse"]["dev"])
        print(
            f"  best with plain probabilities: K={plain['K']} M={plain['M']}: {plain['sparse']['dev']:.2f} / "
            f"{plain['sparse']['test']:.2f} / {plain['sparse']['all']:.2f}"
        )
    if args.json:
        from text2token.textio import write_json_atomic

        write_json_atomic(args.json, result)
        print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

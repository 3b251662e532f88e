"""Smaller vectors in the index: nDCG@10 and bytes per document of the ANN graph's vector precisions (f16, int8,
sign bits) against exact float32 search, on the bundled WordNet retrieval task (3,000 documents, 500 queries), with
and without rescoring the graph's candidates by the float vectors — all through `SearchIndex.ranked`, the code
`text2token search` runs.

The corpus is indexed once (`build_index`, f16 graph); the int8 and sign-bit graphs are then built from the same
`dense.npy` into copies of the index (what `text2token index --ann on --ann-dtype i8|b1` writes). Goal: int8 loses
<= 0.5 nDCG points at a quarter of float32's bytes.

    python benchmarks/quantised_index.py --model runs/combined/model --json benchmarks/results/quantised_index.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np


def rebuild_graph(folder: Path, dtype: str) -> None:
    """Replace the index's graph by one of ``dtype`` built from its dense.npy (index.json updated to match)."""
    from text2token.retrieval.ann import ANN_FILE, build_ann

    dense = np.load(folder / "dense.npy")
    build_ann([(0, dense)], folder / ANN_FILE, dense.shape[1], dtype)
    info = json.loads((folder / "index.json").read_text())
    size = (folder / ANN_FILE).stat().st_size
    info["ann"].update(dtype=dtype, bytes=size)
    info["files"][ANN_FILE] = size
    (folder / "index.json").write_text(json.dumps(info, indent=2) + "\n")


def ndcg(index, queries, qids, dids, qrels, **kwargs) -> float:
    from text2token.evaluation.suite import ndcg_at_10

    scores = np.full((len(queries), len(dids)), -np.inf, dtype=np.float32)
    for i, (rows, _scores) in enumerate(index.ranked(queries, 10, **kwargs)):
        scores[i, rows] = np.arange(len(rows), 0, -1)  # rank order (hybrid scores are not cosines)
    return 100 * ndcg_at_10(scores, qids, dids, qrels)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="a text2token folder or a named backbone")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)

    from text2token import Text2TokenModel
    from text2token.evaluation.suite import load_task
    from text2token.retrieval import SearchIndex, build_index
    from text2token.retrieval.ann import ANN_FILE, vector_bytes

    task = load_task("WordNetNounDefinitionRetrieval")
    qs, corpus, qrels = task.data["queries"], task.data["corpus"], task.data["qrels"]
    queries, qids, dids = [q["text"] for q in qs], [q["id"] for q in qs], [c["id"] for c in corpus]
    model = Text2TokenModel.from_pretrained(args.model)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        base = Path(d) / "f16"
        build_index(
            model,
            [{"id": c["id"], "text": c["text"]} for c in corpus],
            base,
            ann="on",
            model_ref=args.model,
            show_progress_bar=True,
        )
        dim = int(np.load(base / "dense.npy", mmap_mode="r").shape[1])
        index = SearchIndex(base, model=model)
        exact = {
            "dense": ndcg(index, queries, qids, dids, qrels, mode="dense", exact=True),
            "hybrid": ndcg(index, queries, qids, dids, qrels, mode="hybrid", exact=True),
        }
        rows.append(
            {
                "vectors": "float32, exact search",
                "bytes_per_doc": 4 * dim,
                "file_bytes_per_doc": 4 * dim,
                "dense_ndcg": round(exact["dense"], 2),
                "dense_ndcg_rescored": None,
                "hybrid_ndcg": round(exact["hybrid"], 2),
            }
        )
        for dtype in ("f16", "i8", "b1"):
            folder = base
            if dtype != "f16":
                folder = Path(d) / dtype
                shutil.copytree(base, folder)
                rebuild_graph(folder, dtype)
            index = SearchIndex(folder, model=model)
            row = {
                "vectors": f"{dtype} ANN graph",
                "bytes_per_doc": vector_bytes(dim, dtype),
                "file_bytes_per_doc": round((folder / ANN_FILE).stat().st_size / len(corpus)),
                "dense_ndcg": round(ndcg(index, queries, qids, dids, qrels, mode="dense", rescore=False), 2),
                "dense_ndcg_rescored": round(ndcg(index, queries, qids, dids, qrels, mode="dense"), 2),
                "hybrid_ndcg": round(ndcg(index, queries, qids, dids, qrels, mode="hybrid"), 2),
            }
            rows.append(row)
            print(row, flush=True)
    for r in rows:
        r["bytes_vs_float32"] = round(r["bytes_per_doc"] / (4 * dim), 4)
        r["dense_lost_vs_exact"] = round(exact["dense"] - r["dense_ndcg"], 2)
        if r["dense_ndcg_rescored"] is not None:
            r["dense_rescored_lost_vs_exact"] = round(exact["dense"] - r["dense_ndcg_rescored"], 2)
    i8 = next(r for r in rows if r["vectors"].startswith("i8"))
    result = {
        "model": args.model,
        "task": "WordNetNounDefinitionRetrieval",
        "documents": len(corpus),
        "queries": len(qs),
        "dim": dim,
        "rows": rows,
        "goal": "int8: <= 0.5 nDCG@10 points lost (dense, rescored) at 1/4 of float32's bytes",
        "goal_met": i8["dense_rescored_lost_vs_exact"] <= 0.5 and i8["bytes_vs_float32"] <= 0.25,
    }
    print("\n| vectors | bytes/doc (vector) | × float32 | graph file bytes/doc | dense nDCG@10 | rescored | hybrid |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['vectors']} | {r['bytes_per_doc']} | {r['bytes_vs_float32']} | {r['file_bytes_per_doc']} | "
            f"{r['dense_ndcg']} | {r['dense_ndcg_rescored'] if r['dense_ndcg_rescored'] is not None else '—'} | "
            f"{r['hybrid_ndcg']} |"
        )
    print(f"\ngoal met: {result['goal_met']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

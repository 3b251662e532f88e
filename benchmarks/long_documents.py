"""Documents longer than the window: `index --passages` vs truncation, on a long-document set built from the bundled
WordNet definition-retrieval task.

The task's 3,000 definitions are shuffled (seed 0) and joined, ``--per-doc`` at a time, into glossary pages (one
definition per paragraph), so most definitions sit past the first 512 tokens of their page. A query (a usage
example with a blank) is relevant to the one page that holds its definition. Each page is indexed once truncated to
the model's window (what `index` does without `--passages`) and once as passages of the window, and, with
``--passage-tokens N``, also as shorter passages (the model loaded with ``max_length=N``); every index is searched
dense, sparse and hybrid (defaults): nDCG@10 over pages, plus the share of definitions past the window and the index
time (same process, same model; the truncated build is the baseline of the time ratio).

    python benchmarks/long_documents.py --model runs/combined/model --json benchmarks/results/long_documents.json
    python benchmarks/long_documents.py --smoke --model TINY_MODEL_DIR     # tiny sizes: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODES = ("dense", "sparse", "hybrid")


def pages(corpus: list[dict], per_doc: int) -> tuple[list[dict], dict]:
    """Glossary pages of ``per_doc`` shuffled definitions each, and each definition's page."""
    order = list(range(len(corpus)))
    random.Random(0).shuffle(order)
    docs, page_of = [], {}
    for k in range(0, len(order), per_doc):
        members = [corpus[i] for i in order[k : k + per_doc]]
        pid = f"page{k // per_doc:03d}"
        docs.append({"id": pid, "text": "\n\n".join(m["text"] for m in members)})
        page_of.update({m["id"]: pid for m in members})
    return docs, page_of


def ndcg10(hits: list[list[dict]], relevant: list[str]) -> float:
    """One relevant page per query: 1/log2(rank + 1) if it is in the top 10, else 0."""
    gains = []
    for row, rel in zip(hits, relevant):
        ids = [h["id"] for h in row[:10]]
        gains.append(1 / np.log2(ids.index(rel) + 2) if rel in ids else 0.0)
    return float(np.mean(gains))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="text2token model folder, hub id, or 'default'")
    p.add_argument("--per-doc", type=int, default=50, help="definitions per page (default 50: ~1,000 tokens)")
    p.add_argument("--passage-tokens", type=int, default=128, help="also index passages of this many tokens (0: no)")
    p.add_argument("--queries", type=int, default=None, help="the first N queries (default: all 500)")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (60 definitions, 20 queries): the script runs")
    args = p.parse_args(argv)

    from text2token import Text2TokenModel
    from text2token.evaluation.suite import load_task
    from text2token.retrieval import SearchIndex, build_index

    task = load_task("WordNetNounDefinitionRetrieval", limit=None)
    queries, corpus, qrels = task.data["queries"], task.data["corpus"], task.data["qrels"]
    relevant_def = {r["query_id"]: r["doc_id"] for r in qrels if float(r["score"]) > 0}
    if args.smoke:
        keep = {relevant_def[q["id"]] for q in queries[:20]}
        corpus = [c for c in corpus if c["id"] in keep] + [c for c in corpus if c["id"] not in keep][:40]
        queries, args.per_doc = queries[:20], 6
    elif args.queries:
        queries = queries[: args.queries]
    docs, page_of = pages(corpus, args.per_doc)
    relevant = [page_of[relevant_def[q["id"]]] for q in queries]
    qtexts = [q["text"] for q in queries]

    model = Text2TokenModel.from_pretrained(args.model)
    window = model.max_length
    if args.smoke:  # the tiny model: a small window, so that pages overflow it
        window = 32
        model = Text2TokenModel.from_pretrained(args.model, max_length=window)
    budget = model.text_budget()
    token_ids = model.tokenizer([d["text"] for d in docs], add_special_tokens=False)["input_ids"]  # once per page
    lengths = [len(ids) for ids in token_ids]
    past = 0  # definitions not wholly inside the first window of their page
    for d, ids in zip(docs, token_ids):
        visible = model.tokenizer.decode(ids[:budget])
        past += sum(part not in visible for part in d["text"].split("\n\n"))
    print(
        f"{args.model}: {len(queries)} queries × {len(docs)} pages of {args.per_doc} definitions "
        f"({int(np.median(lengths))} tokens median, {max(lengths)} max); window {window} tokens "
        f"({budget} of text); {past} of {len(corpus)} definitions are not wholly inside it"
    )

    settings = [("truncated", window, False), ("passages", window, True)]
    if args.passage_tokens and not args.smoke:
        settings.append((f"passages of {args.passage_tokens}", args.passage_tokens, True))
    elif args.smoke:
        settings.append(("passages of 16", 16, True))
    rows, base_seconds = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for name, max_length, split in settings:
            m = model if max_length == window else Text2TokenModel.from_pretrained(args.model, max_length=max_length)
            out = Path(tmp) / name.replace(" ", "_")
            t0 = time.perf_counter()
            info = build_index(m, docs, out, model_ref=args.model, passages=split, show_progress_bar=False)
            seconds = time.perf_counter() - t0
            base_seconds = base_seconds or seconds
            index = SearchIndex(out, model=m)
            scores = {mode: ndcg10(index.search(qtexts, top=10, mode=mode), relevant) for mode in MODES}
            rows[name] = {
                "rows": info["documents"],
                "documents_truncated": info["documents_truncated"],
                "index_seconds": round(seconds, 1),
                "index_time_ratio": round(seconds / base_seconds, 2),
                **{f"ndcg_at_10_{mode}": round(100 * v, 2) for mode, v in scores.items()},
            }
            r = rows[name]
            print(
                f"  {name:<20} rows {r['rows']:>5}  cut {r['documents_truncated']:>4}  index {r['index_seconds']:>7.1f} s "
                f"(x{r['index_time_ratio']:.2f})  nDCG@10 dense {r['ndcg_at_10_dense']:6.2f}  sparse "
                f"{r['ndcg_at_10_sparse']:6.2f}  hybrid {r['ndcg_at_10_hybrid']:6.2f}",
                flush=True,
            )
    result = {
        "model": args.model,
        "queries": len(queries),
        "pages": len(docs),
        "definitions_per_page": args.per_doc,
        "page_tokens_median": int(np.median(lengths)),
        "window": window,
        "definitions_past_the_window": past,
        "definitions": len(corpus),
        "settings": rows,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

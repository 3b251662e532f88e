"""A small offline evaluation suite over the bundled tasks, with MTEB's metric definitions:

- Classification: logistic regression on frozen embeddings, fit on train, accuracy on test;
- Clustering: k-means with k = number of labels, V-measure averaged over 3 seeds;
- Retrieval: cosine similarity, nDCG@10;
- WordSimilarity: Spearman correlation of cosine similarity with the human score.

Scores are on a 0–100 scale. Suites: ``demo`` (four held-out tasks on fixed, seeded
subsets, for the before/after table), ``quick`` (the same tasks on smaller subsets),
``held-out`` (the four tasks, complete) and ``full`` = ``offline`` (all six tasks, complete).
Results carry per-category (task type) means as well as the overall mean.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import v_measure_score

from ..errors import Text2TokenError
from ..textio import read_jsonl

TASKS_DIR = Path(__file__).resolve().parent.parent / "data" / "tasks"
HELD_OUT = ("RottenTomatoesClassification", "MiniNewsgroupsClustering", "WordNetNounDefinitionRetrieval", "WordSim353")
ALL_TASKS = HELD_OUT + ("ConventionSpeechClassification", "BrownGenreClustering")
# Per-suite task → subset size (None = whole task). Subsets are seeded samples.
SUITES: dict[str, dict[str, int | None]] = {
    "demo": {"RottenTomatoesClassification": 400, "MiniNewsgroupsClustering": None,
             "WordNetNounDefinitionRetrieval": 200, "WordSim353": None},
    "quick": {"RottenTomatoesClassification": 200, "MiniNewsgroupsClustering": None,
              "WordNetNounDefinitionRetrieval": 100, "WordSim353": None},
    "held-out": {name: None for name in HELD_OUT},
    "full": {name: None for name in ALL_TASKS},
    "offline": {name: None for name in ALL_TASKS},  # the name the docs use for "every bundled task, complete"
}


@dataclass
class Task:
    name: str
    type: str
    main_score: str
    data: dict = field(default_factory=dict)


def load_task(name_or_dir: str | Path, limit: int | None = None, seed: int = 0) -> Task:
    """Load a bundled task by name (or a folder in the same format), optionally subsampled."""
    folder = Path(name_or_dir)
    if not folder.is_dir():
        folder = TASKS_DIR / str(name_or_dir)
    if not (folder / "task.json").is_file():
        known = ", ".join(sorted(p.name for p in TASKS_DIR.iterdir() if p.is_dir()))
        raise Text2TokenError(f"unknown task '{name_or_dir}'; bundled tasks: {known}")
    meta = json.loads((folder / "task.json").read_text(encoding="utf-8"))
    rng = np.random.default_rng(seed)

    def sample(rows, n):
        if n is None or n >= len(rows):
            return rows
        return [rows[i] for i in sorted(rng.choice(len(rows), n, replace=False))]

    kind = meta["type"]
    data: dict = {}
    if kind == "Classification":
        data["train"] = sample(read_jsonl(folder / "train.jsonl"), limit)
        data["test"] = sample(read_jsonl(folder / "test.jsonl"), limit)
    elif kind == "Clustering":
        data["test"] = sample(read_jsonl(folder / "test.jsonl"), limit)
    elif kind in ("WordSimilarity", "STS"):
        data["test"] = sample(read_jsonl(folder / "test.jsonl"), limit)
    elif kind == "Retrieval":
        queries = sample(read_jsonl(folder / "queries.jsonl"), limit)
        qrels = [r for r in read_jsonl(folder / "qrels.jsonl")]
        corpus = read_jsonl(folder / "corpus.jsonl")
        if limit is not None:
            keep_q = {q["id"] for q in queries}
            qrels = [r for r in qrels if r["query_id"] in keep_q]
            relevant = {r["doc_id"] for r in qrels}
            others = [d for d in corpus if d["id"] not in relevant]
            extra = sample(others, max(0, 5 * limit - len(relevant)))
            corpus = [d for d in corpus if d["id"] in relevant] + extra
        data.update(queries=queries, qrels=qrels, corpus=corpus)
    else:
        raise Text2TokenError(f"{folder / 'task.json'}: unsupported task type '{kind}'")
    return Task(meta["name"], kind, meta["main_score"], data)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def ndcg_at_10(scores: np.ndarray, query_ids: list[str], doc_ids: list[str], qrels: list[dict]) -> float:
    rel: dict[str, dict[str, float]] = {}
    for r in qrels:
        rel.setdefault(r["query_id"], {})[r["doc_id"]] = float(r["score"])
    values = []
    for qi, qid in enumerate(query_ids):
        gains = rel.get(qid, {})
        top = np.argsort(-scores[qi], kind="stable")[:10]
        dcg = sum(gains.get(doc_ids[d], 0.0) / math.log2(rank + 2) for rank, d in enumerate(top))
        ideal = sorted(gains.values(), reverse=True)[:10]
        idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
        values.append(dcg / idcg if idcg > 0 else 0.0)
    return float(np.mean(values))


def evaluate_task(model, task: Task, batch_size: int = 32) -> float:
    """Main score of ``task`` for ``model`` (anything with ``encode(texts) -> np.ndarray``), 0–100."""
    enc = lambda texts: np.asarray(model.encode(texts, batch_size=batch_size), dtype=np.float32)  # noqa: E731
    d = task.data
    if task.type == "Classification":
        x_train = enc([r["text"] for r in d["train"]])
        x_test = enc([r["text"] for r in d["test"]])
        clf = LogisticRegression(max_iter=1000, random_state=0)
        clf.fit(x_train, [r["label"] for r in d["train"]])
        return 100 * float(np.mean(clf.predict(x_test) == np.array([r["label"] for r in d["test"]])))
    if task.type == "Clustering":
        x = enc([r["text"] for r in d["test"]])
        labels = [r["label"] for r in d["test"]]
        k = len(set(labels))
        scores = [v_measure_score(labels, KMeans(n_clusters=k, n_init=10, random_state=s).fit_predict(x)) for s in range(3)]
        return 100 * float(np.mean(scores))
    if task.type in ("WordSimilarity", "STS"):
        words = sorted({r["text1"] for r in d["test"]} | {r["text2"] for r in d["test"]})
        index = {w: i for i, w in enumerate(words)}
        x = enc(words)
        a = x[[index[r["text1"]] for r in d["test"]]]
        b = x[[index[r["text2"]] for r in d["test"]]]
        a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        sims = (a * b).sum(axis=1)
        return 100 * float(spearmanr(sims, [r["score"] for r in d["test"]]).statistic)
    if task.type == "Retrieval":
        q = enc([r["text"] for r in d["queries"]])
        c = enc([r["text"] for r in d["corpus"]])
        return 100 * ndcg_at_10(_cos(q, c), [r["id"] for r in d["queries"]], [r["id"] for r in d["corpus"]], d["qrels"])
    raise Text2TokenError(f"unsupported task type '{task.type}'")


def evaluate_suite(model, suite: str = "demo", batch_size: int = 32, progress=print) -> dict:
    """Evaluate on a named suite; returns ``{"suite", "tasks": {name: {type, main_score, metric, subset, seconds}}, "mean"}``."""
    if suite not in SUITES:
        raise Text2TokenError(f"unknown suite '{suite}'; choose one of {', '.join(SUITES)}")
    results = {}
    for name, limit in SUITES[suite].items():
        task = load_task(name, limit=limit)
        t0 = time.perf_counter()
        score = evaluate_task(model, task, batch_size=batch_size)
        results[name] = {"type": task.type, "metric": task.main_score, "main_score": round(score, 2),
                         "subset": limit, "seconds": round(time.perf_counter() - t0, 1)}
        if progress:
            progress(f"  {name}: {task.main_score} = {score:.2f} ({results[name]['seconds']} s)")
    mean = float(np.mean([r["main_score"] for r in results.values()]))
    categories: dict[str, list[float]] = {}
    for r in results.values():
        categories.setdefault(r["type"], []).append(r["main_score"])
    return {"suite": suite, "tasks": results, "mean": round(mean, 2),
            "categories": {k: round(float(np.mean(v)), 2) for k, v in categories.items()}}


def format_table(columns: dict[str, dict]) -> str:
    """Markdown table: one row per task, one column per named result (plus the mean)."""
    names = list(columns)
    first = columns[names[0]]
    header = "| task | type | metric | subset | " + " | ".join(names) + " |"
    lines = [header, "|" + "---|" * (4 + len(names))]
    for task, info in first["tasks"].items():
        subset = "all" if info.get("subset") is None else f"{info['subset']} (seeded)"
        cells = [f"{columns[n]['tasks'][task]['main_score']:.2f}" if task in columns[n]["tasks"] else "–" for n in names]
        lines.append(f"| {task} | {info['type']} | {info['metric']} | {subset} | " + " | ".join(cells) + " |")
    lines.append("| **mean** | | | | " + " | ".join(f"**{columns[n]['mean']:.2f}**" for n in names) + " |")
    cats = [c for c in first.get("categories", {}) if all(c in columns[n].get("categories", {}) for n in names)]
    if len(cats) > 1:
        lines += ["", "| category | " + " | ".join(names) + " |", "|" + "---|" * (1 + len(names))]
        lines += [f"| {c} | " + " | ".join(f"{columns[n]['categories'][c]:.2f}" for n in names) + " |" for c in cats]
    return "\n".join(lines)

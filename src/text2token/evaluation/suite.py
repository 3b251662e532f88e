"""A small offline evaluation suite over the bundled tasks, scored by mteb's own evaluators (the tasks run as
local mteb tasks, :mod:`.local_tasks`; each task type's protocol is in :mod:`.task_types`):

- Classification: mteb's few-shot protocol (logistic regression on 8 examples per label, 10 experiments), or
  ``classification="all-train"`` (fit once on every training row);
- Clustering: mteb's mini-batch k-means (k = number of labels) on 10 bootstrap samples, V-measure;
- Retrieval: cosine similarity, nDCG@10;
- WordSimilarity: Spearman correlation of cosine similarity with the human score (mteb's STS evaluator);
- STS: the same Spearman correlation on pairs of texts;
- PairClassification: average precision of the best similarity score (mteb's ``max_ap``);
- Reranking: each query's own candidates ranked by cosine similarity, MAP@1000.

Scores are on a 0–100 scale. Suites: ``demo`` (four held-out tasks on fixed, seeded
subsets, for the before/after table), ``quick`` (the same tasks on smaller subsets),
``dev`` (all eleven bundled tasks on seeded subsets, ~5 minutes for SmolLM2-135M on 2 cores: what studies choose
recipes on), ``held-out`` (the four tasks, complete) and ``full`` = ``offline`` (the first six tasks, complete).
Results carry per-category (task type) means as well as the overall mean.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..errors import Text2TokenError
from .task_types import TASKS_DIR, Task, load_task, protocol

__all__ = [
    "ALL_TASKS",
    "DEV_TASKS",
    "HELD_OUT",
    "SUITES",
    "TASKS_DIR",
    "Task",
    "evaluate_suite",
    "evaluate_task",
    "format_table",
    "load_task",
    "ndcg_at_10",
    "require_suite",
]
HELD_OUT = ("RottenTomatoesClassification", "MiniNewsgroupsClustering", "WordNetNounDefinitionRetrieval", "WordSim353")
ALL_TASKS = HELD_OUT + ("ConventionSpeechClassification", "BrownGenreClustering")
# Built for the dev suite from Debian packages (data/tasks/README.md): the task types the first six cover least.
DEV_TASKS = (
    "FortuneTopicClassification",
    "DebianPackageSectionClustering",
    "DebianSynopsisReranking",
    "WordNetVerbSensePairClassification",
    "WordNetNounGlossSTS",  # graded by WordNet's taxonomy (Wu-Palmer), a proxy for sentence similarity
)
# Per-suite task → subset size (None = whole task). Subsets are seeded samples.
SUITES: dict[str, dict[str, int | None]] = {
    "demo": {
        "RottenTomatoesClassification": 400,
        "MiniNewsgroupsClustering": None,
        "WordNetNounDefinitionRetrieval": 200,
        "WordSim353": None,
    },
    "quick": {
        "RottenTomatoesClassification": 200,
        "MiniNewsgroupsClustering": None,
        "WordNetNounDefinitionRetrieval": 100,
        "WordSim353": None,
    },
    # the suite studies choose recipes on: all eleven bundled tasks, seeded subsets sized so that SmolLM2-135M scores
    # the whole suite in about 5 minutes on 2 CPU cores; seven task types
    "dev": {
        "RottenTomatoesClassification": 300,
        "ConventionSpeechClassification": 60,
        "FortuneTopicClassification": 300,
        "BrownGenreClustering": 300,
        "MiniNewsgroupsClustering": 120,
        "DebianPackageSectionClustering": 240,
        "WordNetNounDefinitionRetrieval": 150,
        "DebianSynopsisReranking": 100,
        "WordNetVerbSensePairClassification": 400,
        "WordNetNounGlossSTS": None,
        "WordSim353": None,
    },
    "held-out": {name: None for name in HELD_OUT},
    "full": {name: None for name in ALL_TASKS},
    "offline": {name: None for name in ALL_TASKS},  # the name the docs use for "every bundled task, complete"
}


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


def evaluate_task(model, task: Task, batch_size: int = 32, classification: str = "mteb") -> float:
    """Main score of ``task`` (0–100) for ``model`` (a :class:`~text2token.Text2TokenModel` or an mteb encoder),
    computed by mteb's evaluator for the task type under the protocol of :mod:`.task_types`."""
    from .local_tasks import score

    return score(_encoder(model, batch_size), task, classification)


def _encoder(model, batch_size: int):
    from ..model import Text2TokenModel

    if isinstance(model, Text2TokenModel):
        from .mteb_runner import MTEBEncoder

        return MTEBEncoder(model, batch_size=batch_size)
    return model


def require_suite(suite: str) -> None:
    """A clear error for a suite name that is not one of :data:`SUITES`."""
    if suite not in SUITES:
        raise Text2TokenError(f"unknown suite '{suite}'; choose one of {', '.join(SUITES)}")


def evaluate_suite(
    model,
    suite: str = "demo",
    batch_size: int = 32,
    progress=print,
    classification: str = "mteb",
    reuse: dict | None = None,
) -> dict:
    """Evaluate on a named suite; returns ``{"suite", "tasks": {name: {type, main_score, metric, protocol, subset,
    seconds}}, "mean", "categories", "max_length"}`` (``max_length``: the encoding length in tokens the texts were
    truncated to).

    ``reuse``: an earlier result of this suite for the same model and settings (the caller vouches for that); its
    tasks scored on the same subset under the same protocol are kept, and only the others are scored — how a
    study's results catch up when a task joins the suite."""
    require_suite(suite)
    encoder = _encoder(model, batch_size)
    earlier = (reuse or {}).get("tasks", {})
    results = {}
    for name, limit in SUITES[suite].items():
        kept = earlier.get(name)
        if kept and kept.get("subset") == limit and kept.get("protocol") == protocol(kept["type"], classification):
            results[name] = kept
            continue
        task = load_task(name, limit=limit)
        t0 = time.perf_counter()
        score = evaluate_task(encoder, task, batch_size=batch_size, classification=classification)
        results[name] = {
            "type": task.type,
            "metric": task.main_score,
            "main_score": round(score, 2),
            "protocol": protocol(task.type, classification),
            "subset": limit,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if progress:
            progress(f"  {name}: {task.main_score} = {score:.2f} ({results[name]['seconds']} s)")
    mean = float(np.mean([r["main_score"] for r in results.values()]))
    categories: dict[str, list[float]] = {}
    for r in results.values():
        categories.setdefault(r["type"], []).append(r["main_score"])
    max_length = getattr(getattr(encoder, "model", None), "max_length", None)
    return {
        "suite": suite,
        "tasks": results,
        "mean": round(mean, 2),
        "categories": {k: round(float(np.mean(v)), 2) for k, v in categories.items()},
        "evaluator": "mteb",
        "classification_protocol": classification,
        "max_length": max_length,
    }


def format_table(columns: dict[str, dict]) -> str:
    """Markdown table: one row per task, one column per named result (plus the mean)."""
    names = list(columns)
    first = columns[names[0]]
    header = "| task | type | metric | subset | " + " | ".join(names) + " |"
    lines = [header, "|" + "---|" * (4 + len(names))]
    for task, info in first["tasks"].items():
        subset = "all" if info.get("subset") is None else f"{info['subset']} (seeded)"
        cells = [
            f"{columns[n]['tasks'][task]['main_score']:.2f}" if task in columns[n]["tasks"] else "–" for n in names
        ]
        lines.append(f"| {task} | {info['type']} | {info['metric']} | {subset} | " + " | ".join(cells) + " |")
    lines.append("| **mean** | | | | " + " | ".join(f"**{columns[n]['mean']:.2f}**" for n in names) + " |")
    cats = [c for c in first.get("categories", {}) if all(c in columns[n].get("categories", {}) for n in names)]
    if len(cats) > 1:
        lines += ["", "| category | " + " | ".join(names) + " |", "|" + "---|" * (1 + len(names))]
        lines += [f"| {c} | " + " | ".join(f"{columns[n]['categories'][c]:.2f}" for n in names) + " |" for c in cats]
    if first.get("evaluator") == "mteb":
        lengths = sorted({columns[n].get("max_length") for n in names} - {None})
        lines += [
            "",
            "Scored by mteb's evaluators. Protocols: "
            + "; ".join(
                f"{kind}: {text}" for kind, text in {i["type"]: i["protocol"] for i in first["tasks"].values()}.items()
            )
            + (f". Texts encoded up to {', '.join(map(str, lengths))} tokens." if lengths else "."),
        ]
    return "\n".join(lines)

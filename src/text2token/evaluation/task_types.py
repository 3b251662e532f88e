"""Every evaluation task type in one table: how its bundled files are read, which mteb task type scores it, its main
score, its protocol, and how its rows become the dataset mteb's evaluator reads. :func:`load_task` and
:func:`text2token.evaluation.local_tasks.mteb_task` only look types up here; adding a type is one entry.

Protocols (stated in every result):

- Classification, ``mteb`` (default): mteb's few-shot protocol — a logistic regression (mteb's default, 100
  iterations) fit on 8 training examples per label, 10 resampled experiments, mean accuracy. ``all-train``: the same
  evaluator fit once on every training row (less variance; not what MTEB reports).
- Clustering: mteb's clustering (the v2 one): all texts embedded, mini-batch k-means with k = number of labels on
  10 bootstrap samples as large as the task, mean V-measure.
- Retrieval: mteb's retrieval evaluator, cosine similarity, nDCG@10.
- WordSimilarity (and STS): mteb's STS evaluator on the pairs, Spearman correlation of the cosine
  (``cosine_spearman``).
- PairClassification: mteb's pair-classification evaluator, average precision of the best similarity (``max_ap``).
- Reranking: mteb's retrieval evaluator restricted to each query's candidates (``top_ranked``), MAP@1000.

mteb is imported only when a task is turned into an mteb task (the functions below import it lazily), so reading a
task stays light.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Text2TokenError
from ..modes import TaskType
from ..textio import read_jsonl

TASKS_DIR = Path(__file__).resolve().parent.parent / "data" / "tasks"
CLASSIFICATION_PROTOCOLS = ("mteb", "all-train")


@dataclass
class Task:
    name: str
    type: str
    main_score: str
    data: dict = field(default_factory=dict)


Sampler = Callable[[list, "int | None"], list]


# ---- reading a task folder's files (``sample(rows, n)``: a seeded subset of n rows, all rows for None)


def _read_labelled(folder: Path, limit, sample) -> dict:
    return {
        "train": sample(read_jsonl(folder / "train.jsonl"), limit),
        "test": sample(read_jsonl(folder / "test.jsonl"), limit),
    }


def _read_test_rows(folder: Path, limit, sample) -> dict:
    return {"test": sample(read_jsonl(folder / "test.jsonl"), limit)}


def _read_retrieval(folder: Path, limit, sample) -> dict:
    queries = sample(read_jsonl(folder / "queries.jsonl"), limit)
    qrels = read_jsonl(folder / "qrels.jsonl")
    corpus = read_jsonl(folder / "corpus.jsonl")
    if limit is not None:  # the relevant documents of the kept queries plus 5 distractors per query
        keep_q = {q["id"] for q in queries}
        qrels = [r for r in qrels if r["query_id"] in keep_q]
        relevant = {r["doc_id"] for r in qrels}
        others = [d for d in corpus if d["id"] not in relevant]
        extra = sample(others, max(0, 5 * limit - len(relevant)))
        corpus = [d for d in corpus if d["id"] in relevant] + extra
    return {"queries": queries, "qrels": qrels, "corpus": corpus}


def _read_reranking(folder: Path, limit, sample) -> dict:
    """Each query with its own candidate list; the corpus is every candidate kept."""
    queries = sample(read_jsonl(folder / "queries.jsonl"), limit)
    keep_q = {q["id"] for q in queries}
    candidates = {
        r["query_id"]: [str(d) for d in r["doc_ids"]]
        for r in read_jsonl(folder / "candidates.jsonl")
        if r["query_id"] in keep_q
    }
    wanted = {d for ids in candidates.values() for d in ids}
    return {
        "queries": queries,
        "candidates": candidates,
        "qrels": [r for r in read_jsonl(folder / "qrels.jsonl") if r["query_id"] in keep_q],
        "corpus": [d for d in read_jsonl(folder / "corpus.jsonl") if d["id"] in wanted],
    }


# ---- the rows as the dataset mteb's evaluator of the type reads


def _classification_dataset(task: Task):
    from datasets import Dataset, DatasetDict

    d = task.data  # labels as integers (mteb's binary metrics take label 1 as positive)
    label_id = {label: i for i, label in enumerate(sorted({r["label"] for s in ("train", "test") for r in d[s]}))}
    return DatasetDict(
        {
            split: Dataset.from_dict(
                {"text": [r["text"] for r in d[split]], "label": [label_id[r["label"]] for r in d[split]]}
            )
            for split in ("train", "test")
        }
    )


def _clustering_dataset(task: Task):
    from datasets import Dataset, DatasetDict

    rows = task.data["test"]
    return DatasetDict(
        {"test": Dataset.from_dict({"sentences": [r["text"] for r in rows], "labels": [r["label"] for r in rows]})}
    )


def _pair_dataset(column: str, row_key: str, cast):
    """Text pairs with a value per pair: mteb's ``column`` from each row's ``row_key``, cast."""

    def build(task: Task):
        from datasets import Dataset, DatasetDict

        rows = task.data["test"]
        return DatasetDict(
            {
                "test": Dataset.from_dict(
                    {
                        "sentence1": [r["text1"] for r in rows],
                        "sentence2": [r["text2"] for r in rows],
                        column: [cast(r[row_key]) for r in rows],
                    }
                )
            }
        )

    return build


def _retrieval_dataset(task: Task):
    from datasets import Dataset
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

    d = task.data
    relevant: dict[str, dict[str, int]] = {}
    for r in d["qrels"]:
        relevant.setdefault(str(r["query_id"]), {})[str(r["doc_id"])] = int(r["score"])
    split = RetrievalSplitData(
        queries=Dataset.from_list([{"id": str(q["id"]), "text": q["text"]} for q in d["queries"]]),
        corpus=Dataset.from_list([{"id": str(c["id"]), "text": c["text"]} for c in d["corpus"]]),
        relevant_docs=relevant,
        top_ranked=d.get("candidates"),
    )
    return {"default": {"test": split}}


# ---- the mteb evaluator settings a task of the type needs besides its data


def _classification_attrs(task: Task, classification: str) -> dict:
    if classification == "all-train":
        return {"samples_per_label": max(len(task.data["train"]), 1), "n_experiments": 1}
    return {}


def _clustering_attrs(task: Task, classification: str) -> dict:
    # a small task: embed every text; each bootstrap sample as large as the task
    return {"max_fraction_of_documents_to_embed": None, "max_documents_per_cluster": len(task.data["test"])}


def _sts_attrs(task: Task, classification: str) -> dict:
    scores = [r["score"] for r in task.data["test"]]
    return {"min_score": min(scores), "max_score": max(scores)}


def _no_attrs(task: Task, classification: str) -> dict:
    return {}


@dataclass(frozen=True)
class TaskTypeSpec:
    name: TaskType
    mteb_type: str  # the mteb task type that scores it
    mteb_base: str  # "module:class" of mteb's abstract task for that type
    main_score: str  # mteb's main score name
    protocol: str  # how it is scored (Classification: the default protocol; see classification_protocols)
    read: Callable[[Path, int | None, Sampler], dict]
    dataset: Callable[[Task], Any]
    attrs: Callable[[Task, str], dict] = _no_attrs


_STS = TaskTypeSpec(
    TaskType.STS,
    "STS",
    "mteb.abstasks.sts:AbsTaskSTS",
    "cosine_spearman",
    "mteb STS: Spearman correlation of the cosine of the two texts' embeddings",
    _read_test_rows,
    _pair_dataset("score", "score", float),
    _sts_attrs,
)
_RETRIEVAL = "mteb.abstasks.retrieval:AbsTaskRetrieval"
TASK_TYPES: dict[str, TaskTypeSpec] = {
    t.name.value: t
    for t in (
        TaskTypeSpec(
            TaskType.CLASSIFICATION,
            "Classification",
            "mteb.abstasks.classification:AbsTaskClassification",
            "accuracy",
            "mteb few-shot: logistic regression (max_iter 100) on 8 train examples per label, "
            "10 resampled experiments, mean accuracy",
            _read_labelled,
            _classification_dataset,
            _classification_attrs,
        ),
        TaskTypeSpec(
            TaskType.CLUSTERING,
            "Clustering",
            "mteb.abstasks.clustering:AbsTaskClustering",
            "v_measure",
            "mteb clustering: mini-batch k-means (k = number of labels) on 10 bootstrap samples of all texts, "
            "mean V-measure",
            _read_test_rows,
            _clustering_dataset,
            _clustering_attrs,
        ),
        TaskTypeSpec(
            TaskType.RETRIEVAL,
            "Retrieval",
            _RETRIEVAL,
            "ndcg_at_10",
            "mteb retrieval: cosine similarity, nDCG@10",
            _read_retrieval,
            _retrieval_dataset,
        ),
        TaskTypeSpec(
            TaskType.RERANKING,
            "Reranking",
            _RETRIEVAL,
            "map_at_1000",
            "mteb reranking: each query's candidates ranked by cosine similarity, MAP@1000",
            _read_reranking,
            _retrieval_dataset,
        ),
        TaskTypeSpec(
            TaskType.PAIR_CLASSIFICATION,
            "PairClassification",
            "mteb.abstasks.pair_classification:AbsTaskPairClassification",
            "max_ap",
            "mteb pair classification: average precision of the best of cosine/dot/distance scores (max_ap)",
            _read_test_rows,
            _pair_dataset("labels", "label", int),
        ),
        _STS,
        # word pairs are scored exactly as sentence pairs
        replace(
            _STS,
            name=TaskType.WORD_SIMILARITY,
            protocol="mteb STS: Spearman correlation of the cosine of the two words' embeddings",
        ),
    )
}
ALL_TRAIN_PROTOCOL = "mteb classifier (logistic regression, max_iter 100) fit once on all train rows, accuracy"


def task_type(name: str, where: str = "") -> TaskTypeSpec:
    """The entry for task type ``name``; an error naming ``where`` the type came from if there is none."""
    if name not in TASK_TYPES:
        raise Text2TokenError(
            f"{where + ': ' if where else ''}unsupported task type '{name}' (supported: {', '.join(TASK_TYPES)})"
        )
    return TASK_TYPES[name]


def protocol(name: str, classification: str = "mteb") -> str:
    """The protocol a task of type ``name`` is scored with (see the module text)."""
    if name == TaskType.CLASSIFICATION and classification == "all-train":
        return ALL_TRAIN_PROTOCOL
    return task_type(name).protocol


def load_task(name_or_dir: str | Path, limit: int | None = None, seed: int = 0) -> Task:
    """Load a bundled task by name (or a folder in the same format), optionally subsampled (seeded)."""
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

    spec = task_type(meta["type"], str(folder / "task.json"))
    return Task(meta["name"], meta["type"], meta["main_score"], spec.read(folder, limit, sample))

"""The bundled evaluation tasks as local mteb 2.x tasks, so that the offline suite is scored by mteb's own
evaluators (no downloads: each task's ``load_data`` reads the bundled files, subsampled as the suite asks).

Protocols, one per task type (stated in every result, ``PROTOCOLS``):

- Classification, ``mteb`` (default): mteb's few-shot protocol — a logistic regression (mteb's default, 100
  iterations) fit on 8 training examples per label, 10 resampled experiments, mean accuracy. ``all-train``: the same
  evaluator fit once on every training row (less variance; not what MTEB reports).
- Clustering: mteb's clustering (the v2 one): all texts embedded, mini-batch k-means with k = number of labels on
  10 bootstrap samples as large as the task, mean V-measure.
- Retrieval: mteb's retrieval evaluator, cosine similarity, nDCG@10.
- WordSimilarity: mteb's STS evaluator on the word pairs, Spearman correlation of the cosine (``cosine_spearman``).
- PairClassification: mteb's pair-classification evaluator, average precision of the best similarity (``max_ap``).
- Reranking: mteb's retrieval evaluator restricted to each query's candidates (``top_ranked``), MAP@1000.
"""

from __future__ import annotations

from typing import Any

from ..errors import Text2TokenError
from .suite import Task

CLASSIFICATION_PROTOCOLS = ("mteb", "all-train")
PROTOCOLS = {
    ("Classification", "mteb"): "mteb few-shot: logistic regression (max_iter 100) on 8 train examples per label, "
                                "10 resampled experiments, mean accuracy",
    ("Classification", "all-train"): "mteb classifier (logistic regression, max_iter 100) fit once on all train "
                                     "rows, accuracy",
    ("Clustering", None): "mteb clustering: mini-batch k-means (k = number of labels) on 10 bootstrap samples of "
                          "all texts, mean V-measure",
    ("Retrieval", None): "mteb retrieval: cosine similarity, nDCG@10",
    ("WordSimilarity", None): "mteb STS: Spearman correlation of the cosine of the two words' embeddings",
    ("PairClassification", None): "mteb pair classification: average precision of the best of cosine/dot/distance "
                                  "scores (max_ap)",
    ("Reranking", None): "mteb reranking: each query's candidates ranked by cosine similarity, MAP@1000",
}
_MTEB_TYPE = {"Classification": "Classification", "Clustering": "Clustering", "Retrieval": "Retrieval",
              "WordSimilarity": "STS", "STS": "STS", "PairClassification": "PairClassification",
              "Reranking": "Reranking"}
_MAIN_SCORE = {"Classification": "accuracy", "Clustering": "v_measure", "Retrieval": "ndcg_at_10", "STS": "cosine_spearman",
               "PairClassification": "max_ap", "Reranking": "map_at_1000"}


def protocol(task_type: str, classification: str = "mteb") -> str:
    """The protocol a task of ``task_type`` is scored with (see the module text)."""
    return PROTOCOLS[(task_type, classification if task_type == "Classification" else None)]


def mteb_task(task: Task, classification: str = "mteb"):
    """An mteb task object holding ``task``'s data (as loaded, i.e. already subsampled)."""
    from mteb.abstasks.task_metadata import TaskMetadata

    if classification not in CLASSIFICATION_PROTOCOLS:
        raise Text2TokenError(f"classification protocol must be one of {', '.join(CLASSIFICATION_PROTOCOLS)}, "
                              f"got '{classification}'")
    kind = _MTEB_TYPE.get(task.type)
    if kind is None:
        raise Text2TokenError(f"unsupported task type '{task.type}'")
    metadata = TaskMetadata(
        name=task.name, type=kind, main_score=_MAIN_SCORE[kind], description=f"bundled text2token task {task.name}",
        reference=None, dataset={"path": f"text2token/{task.name}", "revision": "bundled"}, category="t2t",
        modalities=["text"], eval_splits=["test"], eval_langs=["eng-Latn"], date=None, domains=None,
        task_subtypes=None, license=None, annotations_creators=None, dialect=None, sample_creation=None,
        bibtex_citation=None)
    base = _base_class(kind)
    attrs: dict[str, Any] = {"metadata": metadata, "load_data": _loader(task, kind)}
    if kind == "Classification" and classification == "all-train":
        attrs.update(samples_per_label=max(len(task.data["train"]), 1), n_experiments=1)
    if kind == "Clustering":  # a small task: embed every text; each bootstrap sample as large as the task
        attrs.update(max_fraction_of_documents_to_embed=None, max_documents_per_cluster=len(task.data["test"]))
    if kind == "STS":
        scores = [r["score"] for r in task.data["test"]]
        attrs.update(min_score=min(scores), max_score=max(scores))
    cls = type(f"Local{task.name}", (base,), attrs)
    return cls()


def _base_class(kind: str):
    if kind == "Classification":
        from mteb.abstasks.classification import AbsTaskClassification

        return AbsTaskClassification
    if kind == "Clustering":
        from mteb.abstasks.clustering import AbsTaskClustering

        return AbsTaskClustering
    if kind in ("Retrieval", "Reranking"):
        from mteb.abstasks.retrieval import AbsTaskRetrieval

        return AbsTaskRetrieval
    if kind == "PairClassification":
        from mteb.abstasks.pair_classification import AbsTaskPairClassification

        return AbsTaskPairClassification
    from mteb.abstasks.sts import AbsTaskSTS

    return AbsTaskSTS


def _loader(task: Task, kind: str):
    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        from datasets import Dataset, DatasetDict

        d = task.data
        if kind == "Classification":  # labels as integers (mteb's binary metrics take label 1 as positive)
            label_id = {label: i for i, label in enumerate(sorted({r["label"] for s in ("train", "test") for r in d[s]}))}
            self.dataset = DatasetDict({split: Dataset.from_dict({"text": [r["text"] for r in d[split]],
                                                                  "label": [label_id[r["label"]] for r in d[split]]})
                                        for split in ("train", "test")})
        elif kind == "Clustering":
            self.dataset = DatasetDict({"test": Dataset.from_dict({"sentences": [r["text"] for r in d["test"]],
                                                                   "labels": [r["label"] for r in d["test"]]})})
        elif kind == "PairClassification":
            self.dataset = DatasetDict({"test": Dataset.from_dict({"sentence1": [r["text1"] for r in d["test"]],
                                                                   "sentence2": [r["text2"] for r in d["test"]],
                                                                   "labels": [int(r["label"]) for r in d["test"]]})})
        elif kind == "STS":
            self.dataset = DatasetDict({"test": Dataset.from_dict({"sentence1": [r["text1"] for r in d["test"]],
                                                                   "sentence2": [r["text2"] for r in d["test"]],
                                                                   "score": [float(r["score"]) for r in d["test"]]})})
        else:
            from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

            relevant: dict[str, dict[str, int]] = {}
            for r in d["qrels"]:
                relevant.setdefault(str(r["query_id"]), {})[str(r["doc_id"])] = int(r["score"])
            split = RetrievalSplitData(
                queries=Dataset.from_list([{"id": str(q["id"]), "text": q["text"]} for q in d["queries"]]),
                corpus=Dataset.from_list([{"id": str(c["id"]), "text": c["text"]} for c in d["corpus"]]),
                relevant_docs=relevant, top_ranked=d.get("candidates"))
            self.dataset = {"default": {"test": split}}
        self.data_loaded = True

    return load_data


def score(encoder, task: Task, classification: str = "mteb") -> float:
    """``task``'s main score (0–100) for an mteb encoder, computed by mteb's evaluator under the stated protocol."""
    import logging
    import warnings

    import mteb

    local = mteb_task(task, classification)
    logging.getLogger("mteb").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn convergence notes and mteb's notes on unregistered tasks
        result = mteb.evaluate(encoder, [local], cache=None, show_progress_bar=False, co2_tracker=False)
    return 100 * float(result.task_results[0].get_score())

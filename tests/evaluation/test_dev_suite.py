"""The dev suite's task types beyond the first six bundled tasks (pair classification, reranking), scored by mteb's
evaluators: each score equals the metric computed by hand from the same embeddings."""

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score

from text2token import Text2TokenModel
from text2token.evaluation.local_tasks import score
from text2token.evaluation.mteb_runner import MTEBEncoder
from text2token.evaluation.suite import DEV_TASKS, SUITES, evaluate_suite, load_task


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu")


def test_dev_suite_holds_every_bundled_task_and_the_new_types():
    from text2token.evaluation.suite import ALL_TASKS, TASKS_DIR

    assert set(SUITES["dev"]) == set(ALL_TASKS) | set(DEV_TASKS)
    types = {load_task(name, limit=5).type for name in SUITES["dev"]}
    assert types == {
        "Classification",
        "Clustering",
        "Retrieval",
        "Reranking",
        "PairClassification",
        "STS",
        "WordSimilarity",
    }
    for name in DEV_TASKS:  # every new task ships with its provenance and licence
        assert (TASKS_DIR / name / "task.json").is_file()
        assert name in (TASKS_DIR / "README.md").read_text()


def test_pair_classification_is_the_best_average_precision_over_similarities(model):
    task = load_task("WordNetVerbSensePairClassification", limit=60)
    d = task.data["test"]
    labels = np.array([r["label"] for r in d])
    assert 0 < labels.sum() < len(labels)
    a, b = (model.encode([r[k] for r in d]) for k in ("text1", "text2"))
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    candidates = [cos, (a * b).sum(1), -np.linalg.norm(a - b, axis=1), -np.abs(a - b).sum(1)]
    expect = 100 * max(average_precision_score(labels, s) for s in candidates)
    assert score(MTEBEncoder(model), task) == pytest.approx(expect, abs=1e-3)


def test_reranking_ranks_only_each_querys_candidates_map(model):
    task = load_task("DebianSynopsisReranking", limit=25)
    d = task.data
    assert len(d["candidates"]) == 25 and all(len(ids) == 10 for ids in d["candidates"].values())
    docs = {r["id"]: r["text"] for r in d["corpus"]}
    assert set(docs) == {i for ids in d["candidates"].values() for i in ids}
    relevant = {r["query_id"]: r["doc_id"] for r in d["qrels"]}
    aps = []
    for q in d["queries"]:
        ids = d["candidates"][q["id"]]
        emb = model.encode([q["text"]] + [docs[i] for i in ids], normalize_embeddings=True)
        order = np.argsort(-(emb[1:] @ emb[0]), kind="stable")
        rank = [ids[i] for i in order].index(relevant[q["id"]]) + 1
        aps.append(1.0 / rank)  # one relevant document: average precision = 1 / its rank
    assert score(MTEBEncoder(model), task) == pytest.approx(100 * np.mean(aps), abs=0.5)


def test_gloss_sts_is_spearman_of_cosine_with_the_graded_score(model):
    task = load_task("WordNetNounGlossSTS", limit=80)
    d = task.data["test"]
    assert task.type == "STS" and all(0 <= r["score"] <= 5 for r in d)
    a, b = (model.encode([r[k] for r in d], normalize_embeddings=True) for k in ("text1", "text2"))
    expect = 100 * spearmanr((a * b).sum(1), [r["score"] for r in d]).statistic
    assert score(MTEBEncoder(model), task) == pytest.approx(expect, abs=1e-3)


def test_a_suite_result_catches_up_on_the_tasks_it_lacks(model):
    """``reuse``: tasks an earlier result scored on the same subset and protocol are kept as they are; a task it
    lacks, or scored on another subset, is scored now; the means cover every task."""
    names = list(SUITES["quick"])
    fresh = evaluate_suite(model, "quick", progress=None)
    earlier = {"tasks": {n: {**fresh["tasks"][n], "main_score": 12.5} for n in names[:2]}}
    earlier["tasks"][names[2]] = {**fresh["tasks"][names[2]], "main_score": 12.5, "subset": 7}
    result = evaluate_suite(model, "quick", progress=None, reuse=earlier)
    assert list(result["tasks"]) == names
    assert [result["tasks"][n]["main_score"] for n in names[:2]] == [12.5, 12.5]
    for n in names[2:]:
        assert result["tasks"][n]["main_score"] == fresh["tasks"][n]["main_score"]
    assert result["mean"] == pytest.approx(np.mean([result["tasks"][n]["main_score"] for n in names]), abs=0.01)

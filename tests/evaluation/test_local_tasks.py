"""The bundled tasks scored by mteb's own evaluators (local mteb tasks): each score equals the metric computed
from the same embeddings by hand, under the protocol the result states."""

import json

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression

from text2token import Text2TokenModel
from text2token.cli import main
from text2token.errors import Text2TokenError
from text2token.evaluation.local_tasks import mteb_task, score
from text2token.evaluation.mteb_runner import MTEBEncoder
from text2token.evaluation.suite import load_task, ndcg_at_10
from text2token.evaluation.task_types import TASK_TYPES, TASKS_DIR
from text2token.modes import TaskType


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu")


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_word_similarity_is_the_spearman_of_the_cosine(model):
    task = load_task("WordSim353", limit=80)
    d = task.data["test"]
    a, b = (_unit(model.encode([r[k] for r in d])) for k in ("text1", "text2"))
    expect = 100 * spearmanr((a * b).sum(1), [r["score"] for r in d]).statistic
    assert score(MTEBEncoder(model), task) == pytest.approx(expect, abs=1e-3)


def test_retrieval_is_ndcg_at_10_of_the_cosine(model):
    task = load_task("WordNetNounDefinitionRetrieval", limit=30)
    d = task.data
    q, c = _unit(model.encode([r["text"] for r in d["queries"]])), _unit(model.encode([r["text"] for r in d["corpus"]]))
    expect = 100 * ndcg_at_10(q @ c.T, [r["id"] for r in d["queries"]], [r["id"] for r in d["corpus"]], d["qrels"])
    assert score(MTEBEncoder(model), task) == pytest.approx(expect, abs=1e-3)


def test_classification_protocols(model):
    """``all-train``: mteb's classifier fit once on every training row = that classifier by hand. ``mteb``: the
    few-shot protocol (8 per label, 10 experiments), a different score from the same embeddings."""
    task = load_task("RottenTomatoesClassification", limit=60)
    d = task.data
    labels = sorted({r["label"] for r in d["train"] + d["test"]})
    y_train = [labels.index(r["label"]) for r in d["train"]]
    y_test = np.array([labels.index(r["label"]) for r in d["test"]])
    clf = LogisticRegression(max_iter=100).fit(model.encode([r["text"] for r in d["train"]]), y_train)
    expect = 100 * float(np.mean(clf.predict(model.encode([r["text"] for r in d["test"]])) == y_test))
    assert score(MTEBEncoder(model), task, "all-train") == pytest.approx(expect, abs=1e-6)
    few_shot = mteb_task(task, "mteb")
    assert (few_shot.samples_per_label, few_shot.n_experiments) == (8, 10)
    # with exactly 8 training rows per label, each of the 10 few-shot experiments draws all of them: the few-shot
    # score is then the classifier fit on those rows, by hand
    eight = [r for label in labels for r in [r for r in d["train"] if r["label"] == label][:8]]
    assert len(eight) == 8 * len(labels)
    task.data = {"train": eight, "test": d["test"]}
    clf = LogisticRegression(max_iter=100).fit(
        model.encode([r["text"] for r in eight]), [labels.index(r["label"]) for r in eight]
    )
    expect = 100 * float(np.mean(clf.predict(model.encode([r["text"] for r in d["test"]])) == y_test))
    assert score(MTEBEncoder(model), task, "mteb") == pytest.approx(expect, abs=1e-6)
    with pytest.raises(Text2TokenError, match="classification protocol must be one of mteb, all-train"):
        mteb_task(task, "most")


def test_clustering_embeds_every_text(model):
    task = load_task("MiniNewsgroupsClustering")
    local = mteb_task(task)
    assert local.max_fraction_of_documents_to_embed is None and local.max_documents_per_cluster == len(
        task.data["test"]
    )
    assert 0 <= score(MTEBEncoder(model), task) <= 100


def test_suite_json_states_evaluator_protocols_and_length(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny_model_dir),
                "--pooling",
                "mean",
                "--suite",
                "quick",
                "--max-length",
                "96",
                "--classification-protocol",
                "all-train",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert data["evaluator"] == "mteb" and data["classification_protocol"] == "all-train" and data["max_length"] == 96
    assert "fit once on all train rows" in data["tasks"]["RottenTomatoesClassification"]["protocol"]
    assert "nDCG@10" in data["tasks"]["WordNetNounDefinitionRetrieval"]["protocol"]
    printed = capsys.readouterr().out
    assert "Scored by mteb's evaluators" in printed and "up to 96 tokens" in printed


def test_one_table_entry_per_task_type_and_every_bundled_task_has_one(tmp_path):
    assert set(TASK_TYPES) == set(TaskType.values())
    for folder in TASKS_DIR.iterdir():
        if (folder / "task.json").is_file():
            meta = json.loads((folder / "task.json").read_text())
            assert meta["type"] in TASK_TYPES, folder
    bad = tmp_path / "odd"
    bad.mkdir()
    (bad / "task.json").write_text(json.dumps({"name": "odd", "type": "Summarization", "main_score": "x"}))
    with pytest.raises(Text2TokenError, match=r"odd/task.json: unsupported task type 'Summarization'"):
        load_task(bad)

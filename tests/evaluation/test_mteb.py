"""MTEB 2.x integration, offline: mteb's own mock tasks run through mteb.evaluate with our encoder."""

import json

import numpy as np
import pytest
from mteb.mocks.mock_tasks.classification import MockClassificationTask
from mteb.mocks.mock_tasks.clustering import MockClusteringTask
from mteb.mocks.mock_tasks.retrieval import MockRetrievalTask
from mteb.mocks.mock_tasks.sts import MockSTSTask

from text2token import Text2TokenModel
from text2token.cli import main
from text2token.errors import Text2TokenError
from text2token.evaluation.mteb_runner import MTEBEncoder, format_mteb_table, resolve_tasks, run_mteb


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return MTEBEncoder(Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu"))


def test_mteb_evaluate_runs_mock_tasks_and_caches(encoder, tmp_path):
    tasks = [MockClassificationTask(), MockClusteringTask(), MockRetrievalTask(), MockSTSTask()]
    result = run_mteb(encoder, tasks, cache_dir=tmp_path, show_progress_bar=False)
    assert set(result["tasks"]) == {t.metadata.name for t in tasks}
    assert set(result["categories"]) == {"Classification", "Clustering", "Retrieval", "STS"}
    for info in result["tasks"].values():
        assert 0 <= info["main_score"] <= 100 or info["type"] == "STS"  # Spearman may be negative
    assert result["mean"] == pytest.approx(np.mean([v["main_score"] for v in result["tasks"].values()]), abs=0.01)
    assert any(tmp_path.rglob("MockSTSTask.json"))  # mteb wrote its result cache
    again = run_mteb(encoder, tasks, cache_dir=tmp_path, show_progress_bar=False)  # served from the cache
    assert again["tasks"] == result["tasks"]
    table = format_mteb_table(result)
    assert "| Classification |" in table and "mean over categories" in table


def test_prompts_follow_mteb_priorities(tiny_model_dir):
    model = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu")
    plain = MTEBEncoder(model)
    prompted = MTEBEncoder(model, prompts={"STS": "Represent the sentence: ", "query": "Query: "})
    assert plain.mteb_model_meta.revision != prompted.mteb_model_meta.revision  # results never mixed in the cache
    task = MockSTSTask()
    assert prompted.get_prompt_name(task.metadata, None) == "STS"
    with pytest.raises(Text2TokenError, match="prompt keys must be MTEB task names"):
        MTEBEncoder(model, prompts={"NoSuchTaskAnywhere": "x"})
    loader = [{"text": ["a cat sat", "dogs bark"]}]
    a = plain.encode(loader, task_metadata=task.metadata, hf_split="test", hf_subset="default")
    b = prompted.encode(loader, task_metadata=task.metadata, hf_split="test", hf_subset="default")
    expect = model.encode(["Represent the sentence: a cat sat", "Represent the sentence: dogs bark"])
    assert a.shape == b.shape == (2, 64) and np.allclose(b, expect) and not np.allclose(a, b)


def test_unknown_names_list_close_matches(capsys, tiny_model_dir):
    with pytest.raises(Text2TokenError, match="'STSBenchmrk' \\(close: STSBenchmark"):
        resolve_tasks(task_names=["STSBenchmrk"])
    assert main(["eval", "--model", str(tiny_model_dir), "--mteb", "MTEB(eng, v3)"]) == 2
    err = capsys.readouterr().err
    assert "unknown MTEB benchmark 'MTEB(eng, v3)'; close matches: MTEB(eng, v2)" in err and "Traceback" not in err
    # the real benchmark definition resolves offline, to exactly the tasks mteb itself lists for it
    import mteb

    resolved = [t.metadata.name for t in resolve_tasks(benchmark="MTEB(eng, v2)")]
    assert resolved and resolved == [t.metadata.name for t in mteb.get_benchmark("MTEB(eng, v2)").tasks]


def test_offline_suite_json_has_types_scores_categories(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "r.json"
    assert (
        main(["eval", "--model", str(tiny_model_dir), "--pooling", "mean", "--suite", "quick", "--output", str(out)])
        == 0
    )
    data = json.loads(out.read_text())
    assert set(data["tasks"]) == {
        "RottenTomatoesClassification",
        "MiniNewsgroupsClustering",
        "WordNetNounDefinitionRetrieval",
        "WordSim353",
    }
    assert all({"type", "main_score"} <= set(v) for v in data["tasks"].values())
    assert data["mean"] == pytest.approx(np.mean([v["main_score"] for v in data["tasks"].values()]), abs=0.01)
    assert set(data["categories"]) == {"Classification", "Clustering", "Retrieval", "WordSimilarity"}
    assert "| category |" in capsys.readouterr().out

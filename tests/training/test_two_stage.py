import json

import numpy as np
from helpers import SENTENCES, tiny_run_config

from text2token import Text2TokenModel
from text2token.fingerprint import model_fingerprint
from text2token.training import train
from text2token.training.checkpoint_model import load_checkpoint_model
from text2token.training.checkpoints import latest_checkpoint


def _log(path):
    return [json.loads(l) for l in path.read_text().splitlines()]


def test_two_stages_train_merge_and_cache_the_prior(tmp_path, tiny_model_dir):
    cfg = tiny_run_config(
        tmp_path,
        tiny_model_dir,
        "stage1.steps=4",
        "stages=[data,model]",
        "stage2.steps=8",
        "stage2.lr=3e-3",
        "stage2.tau=0.1",
        "stage2.max_texts=32",
    )
    model_dir = train(cfg, show_progress_bar=False)
    run = tmp_path / "run"
    log2 = _log(run / "stage2-model" / "train_log.jsonl")
    assert len(log2) == 8 and all(r["stage"] == "model" for r in log2)
    assert np.mean([r["loss"] for r in log2[-2:]]) < np.mean([r["loss"] for r in log2[:2]]), log2
    assert 0 < log2[0]["q_mass_top64"] <= 1
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["stages"] == ["data", "model"] and summary["steps"] == 12
    # stage 2's frozen model is the merged stage-1 model, not the base
    s1 = json.loads((run / "stage1-data" / "summary.json").read_text())
    s2 = json.loads((run / "stage2-model" / "summary.json").read_text())
    assert s1["frozen_model_fingerprint"] != s2["frozen_model_fingerprint"]
    # the stage-1 checkpoint rebuilds exactly the model stage 2 started from; the final model differs from it
    stage1 = load_checkpoint_model(latest_checkpoint(run / "stage1-data"))
    assert model_fingerprint(stage1.backbone) == s2["frozen_model_fingerprint"]
    final = Text2TokenModel.from_pretrained(str(model_dir), device="cpu")
    assert not any("lora" in n for n, _ in final.named_parameters())
    assert model_fingerprint(final.backbone) != s2["frozen_model_fingerprint"]
    prior_file = run / "stage2-model" / "prior.safetensors"
    stamp = prior_file.stat().st_mtime_ns
    # resuming a finished run skips both stages and reuses everything
    again = train(cfg, resume=True, show_progress_bar=False)
    assert prior_file.stat().st_mtime_ns == stamp
    np.testing.assert_allclose(
        Text2TokenModel.from_pretrained(str(again), device="cpu").encode(SENTENCES[:2]),
        final.encode(SENTENCES[:2]),
        atol=1e-5,
    )


def test_precomputed_targets_report_mass_and_stage_alone(tmp_path, tiny_model_dir):
    cfg = tiny_run_config(
        tmp_path,
        tiny_model_dir,
        "stages=[model]",
        "stage2.steps=3",
        "stage2.targets=precomputed",
        "stage2.top_k=16",
        "stage2.tau=0.01",
        "stage2.max_texts=24",
    )
    train(cfg, show_progress_bar=False)
    report = json.loads((tmp_path / "run" / "stage2-model" / "data_report.json").read_text())["targets"]
    assert report["top_k"] == 16 and 0 < report["mass_kept_min"] <= report["mass_kept_mean"] <= 1
    from text2token.targets import SparseTargets

    targets = SparseTargets.load(tmp_path / "run" / "stage2-model" / "targets.safetensors")
    assert len(targets) == 24 and np.allclose(np.add.reduceat(targets.weights, targets.indptr[:-1]), 1, atol=1e-5)


def _straight_vs_extended(tmp_path, model_dir, common, short, full):
    """Train ``full`` straight; train ``short`` then resume with ``full``; both final models must agree."""
    straight_dir, part_dir = tmp_path / "a", tmp_path / "b"
    straight_dir.mkdir()
    part_dir.mkdir()
    straight = train(tiny_run_config(straight_dir, model_dir, *common, full), show_progress_bar=False)
    train(tiny_run_config(part_dir, model_dir, *common, short), show_progress_bar=False)
    resumed = train(tiny_run_config(part_dir, model_dir, *common, full), resume=True, show_progress_bar=False)
    a = Text2TokenModel.from_pretrained(str(straight), device="cpu").encode(SENTENCES[:3])
    b = Text2TokenModel.from_pretrained(str(resumed), device="cpu").encode(SENTENCES[:3])
    np.testing.assert_allclose(a, b, atol=1e-5)
    return straight_dir / "run", part_dir / "run"


def test_resume_inside_stage_two_matches_a_straight_run(tmp_path, tiny_model_dir):
    common = ["stage1.steps=2", "stages=[data,model]", "stage2.lr=3e-3", "stage2.tau=0.1", "stage2.max_texts=48"]
    straight, part = _straight_vs_extended(tmp_path, tiny_model_dir, common, "stage2.steps=4", "stage2.steps=6")
    log = _log(part / "stage2-model" / "train_log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(
        [r["loss"] for r in log], [r["loss"] for r in _log(straight / "stage2-model" / "train_log.jsonl")], rtol=1e-5
    )


def test_training_stage_one_further_invalidates_a_finished_stage_two(tmp_path, tiny_model_dir):
    common = ["stages=[data,model]", "stage2.steps=3", "stage2.max_texts=24", "stage2.lr=3e-3", "stage2.tau=0.1"]
    _straight_vs_extended(tmp_path, tiny_model_dir, common, "stage1.steps=2", "stage1.steps=4")

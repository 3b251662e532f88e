"""Readable runs (environment, curves, summary, hit rate) and the analysis command."""

import json

import numpy as np
import pytest
import torch
from helpers import SENTENCES, tiny_run_config

from text2token.cli import main
from text2token.objectives import topk_hit_rate
from text2token.training import train


def test_topk_hit_rate_by_hand():
    logits = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    ids = torch.tensor([[0, 3, 0], [4, 3, 2]])
    valid = torch.tensor([[True, True, False], [True, True, True]])
    # row 0: n=2, top-2 = {0, 1}, targets {0, 3} -> 1/2; row 1: n=3, top-3 = {4, 3, 2} -> 3/3
    assert float(topk_hit_rate(logits, ids, valid)) == pytest.approx(0.75)


def test_run_folder_is_readable(tmp_path, tiny_model_dir, capsys):
    cfg = tiny_run_config(
        tmp_path,
        tiny_model_dir,
        "stages=[data,model]",
        "stage1.steps=3",
        "stage2.steps=2",
        "stage2.max_texts=16",
        "stage2.tau=0.1",
        "isotropy.corpus=bundled:brown",
        "isotropy.texts=120",
        "isotropy.directions=2",
    )
    train(cfg, show_progress_bar=False)
    run = tmp_path / "run"
    info = json.loads((run / "run_info.json").read_text())
    assert info["versions"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert info["versions"]["transformers"] and "git_commit" in info
    assert (run / "training_curves.png").stat().st_size > 1000
    log = [json.loads(l) for l in (run / "stage1-data" / "train_log.jsonl").read_text().splitlines()]
    assert all(0 <= r["hit_rate"] <= 1 for r in log)
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "stage1-data: 3/3 steps, finished" in out and "stage2-model: 2/2 steps, finished" in out
    assert "hit rate" in out and "training_curves.png" in out
    # fitted at the end of training on a seeded sample of the named corpus, saved in the folder, reported
    assert "isotropy correction: mean of 120 texts of bundled:brown (seed 0) subtracted, top 2 direction(s)" in out
    from text2token import Text2TokenModel

    assert Text2TokenModel.from_pretrained(str(run / "model"), device="cpu").correction.num_directions == 2
    assert main(["report", str(tmp_path)]) == 2


def test_analyze_table_json_and_png(tmp_path, tiny_model_dir, tokenizer, capsys):
    from helpers import make_tiny_model

    texts = tmp_path / "t.txt"
    texts.write_text("\n".join(SENTENCES[:8]) + "\n")
    other = make_tiny_model(tmp_path / "other", tokenizer, seed=5)
    out = tmp_path / "a.json"
    assert (
        main(
            [
                "analyze",
                "--model",
                str(other),
                "--base",
                str(tiny_model_dir),
                "--pooling",
                "mean",
                "--input",
                str(texts),
                "--top-k",
                "5",
                "--directions",
                "4",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    v = res["vocabulary"]
    for side in ("base", "trained"):
        assert v[side]["own_token_hit_rate"] + v[side]["beyond_text_share"] == pytest.approx(1.0)
    assert len(res["directions"]) == 4
    shares = [d["base_variance_share"] for d in res["directions"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-6  # SVD order
    for g in res["geometry"].values():  # how much of the space the vectors use
        assert -1 <= g["mean_pairwise_cosine"] <= 1 and g["mean_norm_ratio"] >= 0
        assert 0 < g["variance_top1"] <= g["variance_top5"] <= g["variance_top20"] <= 1 + 1e-6
    assert (tmp_path / "a.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "share from beyond the text" in out and "mean pairwise cosine" in out


def test_geometry_tells_shared_direction_from_spread_vectors():
    from text2token.analysis import geometry

    rng = np.random.default_rng(0)
    spread = rng.standard_normal((500, 64))
    shared = spread + 20 * np.ones(64)  # one large common direction
    g_spread, g_shared = geometry(spread), geometry(shared)
    assert abs(g_spread["mean_pairwise_cosine"]) < 0.05 < 0.9 < g_shared["mean_pairwise_cosine"]
    assert g_spread["mean_norm_ratio"] < 0.2 < 0.9 < g_shared["mean_norm_ratio"]
    assert geometry(shared - shared.mean(0))["mean_pairwise_cosine"] < 0.05  # centring removes it


def test_tensorboard_logging_or_a_clear_error(tmp_path, tiny_model_dir):
    import importlib.util

    from text2token.errors import ConfigError

    cfg = tiny_run_config(tmp_path, tiny_model_dir, "stage1.steps=2", "training.tensorboard=true")
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(ConfigError, match="pip install tensorboard"):
            train(cfg, show_progress_bar=False)
    else:
        train(cfg, show_progress_bar=False)
        assert any((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))

"""Two CPU processes under `accelerate launch` (DDP, gloo) follow the same loss trajectory and end
with the same weights as one process with the same global batch."""

import json
import os
import subprocess

import numpy as np
import pytest
import torch
from helpers import SENTENCES, accelerate_launch, training_command
from safetensors.torch import load_file

from text2token import Text2TokenModel

pytestmark = pytest.mark.slow  # subprocess training runs


# fp32: the comparison is about DDP (same losses to rtol 1e-4), not about precision
TWO_STAGES = [
    "stages=[data,model]",
    "stage2.steps=3",
    "stage2.max_texts=16",
    "stage2.lr=3e-3",
    "stage2.tau=0.1",
    "training.mixed_precision=no",
]


def test_two_processes_match_one(tmp_path, tiny_model_dir):
    """Both stages: same losses, same corpus prior (all-reduced), same final weights."""
    steps = 6
    one = tmp_path / "one"
    # separate caches, so that the 2-process run computes (and all-reduces) its own prior
    env_one = {**os.environ, "TEXT2TOKEN_HOME": str(tmp_path / "home1")}
    subprocess.run(
        training_command(tmp_path, tiny_model_dir, one, steps) + TWO_STAGES,
        check=True,
        capture_output=True,
        env=env_one,
    )
    two = tmp_path / "two"
    cmd = training_command(tmp_path, tiny_model_dir, two, steps) + TWO_STAGES
    launch = accelerate_launch(*cmd[3:])
    res = subprocess.run(
        launch,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "TEXT2TOKEN_HOME": str(tmp_path / "home2")},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    for stage in ("stage1-data", "stage2-model"):
        read = lambda run, stage=stage: [  # noqa: E731
            json.loads(line)["loss"] for line in (run / stage / "train_log.jsonl").read_text().splitlines()
        ]
        np.testing.assert_allclose(read(two), read(one), rtol=1e-4)
    prior = lambda run: load_file(str(run / "stage2-model" / "prior.safetensors"))["prior"]  # noqa: E731
    assert torch.allclose(prior(one), prior(two), rtol=1e-5, atol=1e-9)
    summary = json.loads((two / "train_summary.json").read_text())
    assert summary["processes"] == 2
    a = Text2TokenModel.from_pretrained(str(one / "model"), device="cpu").encode(SENTENCES[:4])
    b = Text2TokenModel.from_pretrained(str(two / "model"), device="cpu").encode(SENTENCES[:4])
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_simcse_two_processes_match_one_with_global_negatives(tmp_path, tiny_model_dir):
    """SimCSE gathers the other process's views as negatives, so 2 processes see the same loss as 1."""
    extra = [
        "objective=simcse",
        "simcse.dropout=0.0",
        "simcse.lr=1e-2",
        "simcse.steps=4",
        "training.mixed_precision=no",
    ]  # no dropout: identical views on both
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(training_command(tmp_path, tiny_model_dir, one, 4) + extra, check=True, capture_output=True)
    launch = accelerate_launch(*(training_command(tmp_path, tiny_model_dir, two, 4) + extra)[3:])
    res = subprocess.run(launch, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    read = lambda run: [json.loads(l)["loss"] for l in (run / "simcse" / "train_log.jsonl").read_text().splitlines()]  # noqa: E731
    np.testing.assert_allclose(read(two), read(one), rtol=1e-4)

"""Two CPU processes under `accelerate launch` (DDP, gloo) follow the same loss trajectory and end
with the same weights as one process with the same global batch."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np

from text2token import Text2TokenModel

from test_interrupt import _cmd
from test_training import SENTENCES


def test_two_processes_match_one(tmp_path, tiny_model_dir):
    steps = 6
    one = tmp_path / "one"
    subprocess.run(_cmd(tmp_path, tiny_model_dir, one, steps), check=True, capture_output=True)
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    two = tmp_path / "two"
    cmd = _cmd(tmp_path, tiny_model_dir, two, steps)
    launch = [accelerate, "launch", "--num_processes", "2", "--num_machines", "1", "--cpu", "--mixed_precision", "no",
              "--dynamo_backend", "no", "-m", "text2token.cli", *cmd[3:]]
    res = subprocess.run(launch, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    read = lambda run: [json.loads(l)["loss"] for l in (run / "stage1-data" / "train_log.jsonl").read_text().splitlines()]  # noqa: E731
    np.testing.assert_allclose(read(two), read(one), rtol=1e-4)
    summary = json.loads((two / "train_summary.json").read_text())
    assert summary["processes"] == 2
    a = Text2TokenModel.from_pretrained(str(one / "model"), device="cpu").encode(SENTENCES[:4])
    b = Text2TokenModel.from_pretrained(str(two / "model"), device="cpu").encode(SENTENCES[:4])
    np.testing.assert_allclose(a, b, atol=1e-4)

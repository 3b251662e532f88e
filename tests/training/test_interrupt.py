"""Interrupting training (SIGINT, SIGTERM, kill -9 at several points) never loses completed work;
--resume continues to bitwise the same weights as an uninterrupted run."""

import json
import signal
import subprocess

import numpy as np
import pytest
import torch
from helpers import SENTENCES, training_command, wait_for_steps
from safetensors.torch import load_file

from text2token import Text2TokenModel
from text2token.training.checkpoint_model import load_checkpoint_model
from text2token.training.checkpoints import latest_checkpoint

pytestmark = pytest.mark.slow  # subprocess training runs


STEPS = 40


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("full")
    subprocess.run(training_command(tmp, tiny_model_dir, tmp / "run", STEPS), check=True, capture_output=True)
    return tmp / "run"


@pytest.mark.parametrize(
    "sig,after_step",
    [
        (signal.SIGINT, 5),
        (signal.SIGTERM, 17),
        (signal.SIGKILL, 1),  # before the first checkpoint (step 3): resume starts over
        (signal.SIGKILL, 10),
        (signal.SIGKILL, 32),
    ],
)
def test_interrupt_then_resume_equals_uninterrupted(tmp_path, tiny_model_dir, full_run, sig, after_step):
    steps, full = STEPS, full_run
    run = tmp_path / "run"
    proc = subprocess.Popen(
        training_command(tmp_path, tiny_model_dir, run, steps),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_steps(run / "stage1-data" / "train_log.jsonl", after_step, proc)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    ckpt = latest_checkpoint(run / "stage1-data")
    if sig == signal.SIGKILL:
        assert proc.returncode == -9
    else:
        assert proc.returncode == 130, proc.stderr.read()
        assert "continue with --resume" in proc.stderr.read()
        assert ckpt is not None  # a clean stop always checkpoints the step it stopped at
    assert not (run / "model").exists()
    if ckpt is not None:
        assert int(ckpt.name.split("-")[1]) >= (after_step // 3) * 3
        load_checkpoint_model(ckpt)  # the last complete checkpoint always loads
    res = subprocess.run(
        training_command(tmp_path, tiny_model_dir, run, steps, resume=True), capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    # Bitwise: on CPU with the same seed and thread count the resumed run ends with the same adapter.
    a = load_file(str(full / "stage1-data" / "adapter_final.safetensors"))
    b = load_file(str(run / "stage1-data" / "adapter_final.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ea = Text2TokenModel.from_pretrained(str(full / "model"), device="cpu").encode(SENTENCES[:4])
    eb = Text2TokenModel.from_pretrained(str(run / "model"), device="cpu").encode(SENTENCES[:4])
    np.testing.assert_array_equal(ea, eb)
    log = [json.loads(l)["step"] for l in (run / "stage1-data" / "train_log.jsonl").read_text().splitlines()]
    assert log == list(range(1, steps + 1)), "the resumed log has each step once"

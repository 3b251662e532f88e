"""Interrupting training (SIGINT, SIGTERM, kill -9) never loses completed work; --resume continues
to the same weights as an uninterrupted run."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from text2token import Text2TokenModel
from text2token.training.trainer import latest_checkpoint, load_checkpoint_model

from test_training import SENTENCES


def _cmd(tmp_path, model_dir, run, steps, resume=False):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return [sys.executable, "-m", "text2token.cli", "train", "--output", str(run), *(["--resume"] if resume else []),
            "stages=[data]", f"model.name={model_dir}", f"data.train_file={corpus}", "model.pooling=mean", "training.batch_size=8",
            "training.max_length=32", "training.lr=3e-3", "lora.r=8", "lora.dropout=0.0", f"training.steps={steps}",
            "training.save_every=3", "training.keep_checkpoints=2"]


def _wait_for_steps(log, n, proc, timeout=120):
    start = time.time()
    while time.time() - start < timeout:
        if log.is_file() and len(log.read_text().splitlines()) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("training did not reach the step in time")


STEPS = 40


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("full")
    subprocess.run(_cmd(tmp, tiny_model_dir, tmp / "run", STEPS), check=True, capture_output=True)
    return tmp / "run"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupt_then_resume_equals_uninterrupted(tmp_path, tiny_model_dir, full_run, sig):
    steps, full = STEPS, full_run
    run = tmp_path / "run"
    proc = subprocess.Popen(_cmd(tmp_path, tiny_model_dir, run, steps), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for_steps(run / "stage1-data" / "train_log.jsonl", 5, proc)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    if sig == signal.SIGKILL:
        assert proc.returncode == -9
    else:
        assert proc.returncode == 130, proc.stderr.read()
        assert "continue with --resume" in proc.stderr.read()
    ckpt = latest_checkpoint(run / "stage1-data")
    assert ckpt is not None and not (run / "model").exists()
    load_checkpoint_model(ckpt)  # the last complete checkpoint always loads
    res = subprocess.run(_cmd(tmp_path, tiny_model_dir, run, steps, resume=True), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    a = Text2TokenModel.from_pretrained(str(full / "model"), device="cpu").encode(SENTENCES[:4])
    b = Text2TokenModel.from_pretrained(str(run / "model"), device="cpu").encode(SENTENCES[:4])
    np.testing.assert_allclose(a, b, atol=1e-5)
    log = [json.loads(l)["step"] for l in (run / "stage1-data" / "train_log.jsonl").read_text().splitlines()]
    assert log == list(range(1, steps + 1)), "the resumed log has each step once"

"""Benchmarks rot unseen unless something runs them: each one here runs in its smoke mode (tiny sizes, the tiny
model) as a user would start it, and must finish cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> str:
    proc = subprocess.run(  # noqa: S603 — this interpreter running the project's own script
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_isotropy_benchmark_smoke(tiny_model_dir):
    out = _run("benchmarks/isotropy.py", "--smoke", "--model", str(tiny_model_dir), "--name", "tiny")
    assert "mean pairwise cosine" in out and "smoke raw: WordSim353" in out and "smoke brown-240-D1" in out
    out = _run("benchmarks/isotropy.py", "--smoke", "--overhead", "--model", str(tiny_model_dir))
    assert "corrected_over_raw" in out


@pytest.mark.slow
def test_long_documents_benchmark_smoke(tiny_model_dir, tmp_path):
    out = _run(
        "benchmarks/long_documents.py", "--smoke", "--model", str(tiny_model_dir), "--json", str(tmp_path / "r.json")
    )
    assert "truncated" in out and "passages of 16" in out
    import json

    rows = json.loads((tmp_path / "r.json").read_text())["settings"]
    assert rows["truncated"]["documents_truncated"] > 0 and rows["passages"]["documents_truncated"] == 0
    assert rows["passages"]["rows"] > rows["truncated"]["rows"]


@pytest.mark.slow
def test_speed_benchmark_smoke(tmp_path):
    """benchmarks/speed.py once stopped at a renamed attribute and nothing noticed: its sections 1-3 run here."""
    out = _run("benchmarks/speed.py", "--smoke", "--json", str(tmp_path / "speed.json"))
    assert "train_step_ratio_vs_simcse" in out and "encode_min_cosine_vs_sentence_transformers" in out
    assert "targets_texts_per_s" in out


@pytest.mark.slow
def test_serve_soak_smoke(tiny_model_dir, tmp_path):
    """The soak of benchmarks/serve.py on the tiny model: clients through a SIGTERM, figures written."""
    from text2token import Text2TokenModel

    Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", max_length=48).save_pretrained(tmp_path / "m")
    args = ["--model", str(tmp_path / "m"), "--soak", "6", "--soak-clients", "4", "--requests", "32"]
    out = _run("benchmarks/serve.py", *args, "--json", str(tmp_path / "soak.json"))
    import json

    result = json.loads((tmp_path / "soak.json").read_text())
    assert result["answered"] > 0 and result["broken"] == 0, out
    assert result["processes_left"] == 0 and result["port_free"] and result["exit_status"] == 0

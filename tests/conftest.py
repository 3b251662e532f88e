"""Shared fixtures: the real SmolLM2 tokenizer (converted once from the bundled GGUF) and a
tiny randomly initialised 2-layer llama built on it, saved as a normal model folder."""

from __future__ import annotations

import os
from pathlib import Path

# Under pytest-xdist (`make test`: two workers) each worker and the subprocesses it starts get one OpenMP thread
# unless told otherwise: two torch processes spinning two threads each on 2 cores slow each other ~10x. Set before
# torch is imported.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import make_tiny_model
from transformers import AutoTokenizer
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The bundled SmolLM2 converted into a plain HF folder (cached across sessions)."""
    from text2token.backbone import resolve_model_path

    return Path(resolve_model_path("default"))


@pytest.fixture(scope="session")
def tokenizer(default_model_dir):
    tok = AutoTokenizer.from_pretrained(default_model_dir)
    return tok


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", tokenizer)


@pytest.fixture()
def tiny_model(tiny_model_dir):
    from text2token import Text2TokenModel

    return Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu")

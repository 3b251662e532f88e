"""Shared fixtures: the real SmolLM2 tokenizer (converted once from the bundled GGUF) and a
tiny randomly initialised 2-layer llama built on it, saved as a normal model folder."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
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


def make_tiny_model(folder: Path, tokenizer, tie: bool = True, seed: int = 0, layers: int = 2) -> Path:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=tie,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", tokenizer)


@pytest.fixture()
def tiny_model(tiny_model_dir):
    from text2token import Text2TokenModel

    return Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu")


@contextmanager
def interrupted_at_call(owner, name: str, call: int):
    """Within the block, the ``call``-th call of ``owner.name`` raises KeyboardInterrupt (a Ctrl-C at that moment);
    the method is restored after."""
    real, calls = getattr(owner, name), []

    def interrupted(self, *a, **k):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    setattr(owner, name, interrupted)
    try:
        yield
    finally:
        setattr(owner, name, real)

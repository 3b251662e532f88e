"""What several test modules share: a small corpus, a tiny training config and command, waiting for a subprocess's
training steps, a tiny randomly initialised llama on the real SmolLM2 tokenizer, and a Ctrl-C injected at a chosen
call. (``tests/`` is on the import path: ``pythonpath`` in pyproject.toml.)"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from text2token.training import load_config

REPO = Path(__file__).resolve().parents[1]  # the repository root

SENTENCES = [
    "Astronomers observed distant galaxies through powerful telescopes.",
    "Farmers harvest wheat and corn in late summer.",
    "The orchestra performed a beautiful symphony last night.",
    "Doctors recommend regular exercise and balanced diets.",
    "Engineers designed bridges that withstand strong earthquakes.",
    "Children played football in the muddy park.",
    "Volcanoes erupted, spreading ash across villages.",
    "Programmers debug software with careful testing.",
] * 4


# Texts that exercise encoding paths: short, punctuated, one word, one truncated, quotes.
PROBE_TEXTS = [
    "A cat sat on the mat.",
    "Stocks fell sharply after the bank raised rates!",
    "short",
    "word " * 120 + "end of a very long text that must be truncated.",
    'He said "yes."',
]


def tiny_run_config(tmp_path, model_dir, *extra):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n\n", encoding="utf-8")
    return load_config(
        None,
        [
            "stages=[data]",
            f"model.name={model_dir}",
            f"data.train_file={corpus}",
            f"output_dir={tmp_path / 'run'}",
            "model.pooling=mean",
            "training.batch_size=8",
            "training.max_length=32",
            "stage1.lr=3e-3",
            "lora.r=8",
            "training.save_every=2",
            "lora.dropout=0.0",
            *extra,
        ],
    )


def stage1_losses(run_dir):
    return [json.loads(l)["loss"] for l in (run_dir / "stage1-data" / "train_log.jsonl").read_text().splitlines()]


def training_command(tmp_path, model_dir, run, steps, resume=False):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return [
        sys.executable,
        "-m",
        "text2token.cli",
        "train",
        "--output",
        str(run),
        *(["--resume"] if resume else []),
        "stages=[data]",
        f"model.name={model_dir}",
        f"data.train_file={corpus}",
        "model.pooling=mean",
        "training.batch_size=8",
        "training.max_length=32",
        "stage1.lr=3e-3",
        "lora.r=8",
        "lora.dropout=0.0",
        f"stage1.steps={steps}",
        "training.save_every=3",
        "training.keep_checkpoints=2",
    ]


def wait_for_steps(log, n, proc, timeout=120):
    start = time.time()
    while time.time() - start < timeout:
        if log.is_file() and len(log.read_text().splitlines()) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("training did not reach the step in time")


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


def accelerate_launch(*cli_args: str) -> list[str]:
    """``accelerate launch`` of the text2token CLI in 2 processes. On a machine without GPUs, accelerate's torchrun
    path (--multi_gpu) starts MULTI_CPU (gloo) processes; its --cpu flag would route them through mpirun instead."""
    import os
    import shutil

    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    return [
        accelerate,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "text2token.cli",
        *cli_args,
    ]


def with_correction(model, directions: int = 2, texts: int = 150):
    """``model`` with an isotropy correction fitted on ``texts`` texts of the bundled Brown corpus (fast on the tiny
    model); returns the model."""
    from text2token.training.isotropy_fit import fit_on_corpus

    fit_on_corpus(model, None, texts=texts, directions=directions, seed=0, show_progress_bar=False)
    return model

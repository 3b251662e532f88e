"""Argument groups several commands share (the model to load, the device, an input file) and their help texts."""

from __future__ import annotations

import argparse

from ..modes import Attention, DType, InputErrors, Pooling
from .argtypes import device_arg, max_length_arg

MODEL_HELP = (
    "the model: a trained text2token folder (e.g. runs/demo/model), a training checkpoint folder, a Hugging "
    "Face id or folder, a .gguf file, 'default' (the untrained bundled SmolLM2-135M) or 'gemma3-270m' "
    "(Gemma 3 270M, with the gemma extra)"
)
INPUT_HELP = (
    ".txt (one text per line), .jsonl (one object per line with the text field), or - for standard input (text)"
)


def model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--pooling", choices=Pooling.values(), help="override the model's pooling")
    p.add_argument("--attention", choices=Attention.values(), help="override the model's attention")
    p.add_argument("--max-length", type=max_length_arg, help="override the maximum tokens per text (>= 8)")
    device_args(p)


def model_positional(p: argparse.ArgumentParser) -> None:
    """The model as ``MODEL`` or ``--model MODEL`` (one of them; read ``args.model or args.model_option``)."""
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("model", metavar="MODEL", nargs="?", help=MODEL_HELP)
    which.add_argument(
        "--model", dest="model_option", metavar="MODEL", help="the model, as the other commands take it (or MODEL)"
    )


def device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", type=device_arg, help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available, else cpu)"
    )
    p.add_argument(
        "--dtype",
        choices=DType.values(),
        default="auto",
        help="weights' dtype (auto: bfloat16 on a GPU with bf16, else float32); the LM head always runs in float32",
    )


def input_args(
    p: argparse.ArgumentParser, flag: str, required: bool, help: str = INPUT_HELP, skip_blank: bool = True
) -> None:
    """An input file option ``flag`` with ``--field``, ``--errors`` and (``skip_blank``) ``--skip-blank``."""
    p.add_argument(flag, required=required, help=help)
    p.add_argument("--field", default="text", help="JSONL field holding the text")
    if skip_blank:
        p.add_argument("--skip-blank", action="store_true", help="skip blank lines instead of refusing the file")
    p.add_argument(
        "--errors",
        choices=InputErrors.values(),
        default="strict",
        help="invalid UTF-8: strict (error naming the line) or replace (U+FFFD, counted)",
    )

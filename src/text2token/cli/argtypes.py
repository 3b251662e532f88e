"""Argument types of the command line: each turns a bad value into one line naming the option."""

from __future__ import annotations

import argparse


def positive(name: str):
    """An integer option that must be >= 1."""
    return at_least(name, 1)


def at_least(name: str, minimum: int, why: str = ""):
    """An integer option that must be >= ``minimum`` (``why``: the reason, shown in the error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}{f' ({why})' if why else ''}, got {value}")
        return value

    return parse


def max_length_arg(text: str) -> int:
    value = positive("--max-length")(text)
    if value < 8:
        raise argparse.ArgumentTypeError(
            f"--max-length must be >= 8 (the template and special tokens need room), got {value}"
        )
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got '{text}'") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def device_arg(text: str) -> str:
    """A torch device this machine has (argparse type): a malformed name or an absent accelerator is one line."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build of torch" if torch.version.cuda is None else "no CUDA device is visible"
            raise argparse.ArgumentTypeError(f"'{text}': this machine cannot run CUDA ({build}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"'{text}': only {torch.cuda.device_count()} CUDA device(s) visible")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"'{text}': MPS is not available on this machine; use --device cpu")
    elif device.type == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise argparse.ArgumentTypeError(f"'{text}': no XPU on this machine; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise argparse.ArgumentTypeError(
            f"'{text}': device type '{device.type}' is not supported here (cpu, cuda, mps)"
        )
    return text

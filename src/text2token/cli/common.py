"""What several command handlers share: loading the model named by --model, reading an input file, notes on
stderr, and checking an output's folder before any model work."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def torch_dtype(args):
    from ..devices import dtype_from_name

    return dtype_from_name(args.dtype)


def load_model(args):
    from ..model import Text2TokenModel
    from ..training.checkpoint_model import is_checkpoint, load_checkpoint_model

    if is_checkpoint(args.model):
        return load_checkpoint_model(args.model)
    model = Text2TokenModel.from_pretrained(
        args.model,
        pooling=args.pooling,
        attention=args.attention,
        max_length=args.max_length,
        device=args.device,
        dtype=torch_dtype(args),
    )
    if not model.is_trained:
        note(
            args,
            f"{args.model} is an untrained backbone ({model.pooling} pooling, {model.attention} attention), "
            "not a text2token-trained model",
        )
    return model


def read_texts(args, path: str):
    """``(ids, texts)`` of an input file (see :func:`text2token.textio.read_records`), with notes on repaired lines."""
    from ..textio import read_records

    ids, texts, counts = read_records(path, field=args.field, skip_blank=args.skip_blank, errors=args.errors)
    input_notes(args, path, counts)
    return ids, texts


def input_notes(args, path: str, counts: dict) -> None:
    if counts["invalid_utf8_lines_replaced"]:
        note(args, f"{counts['invalid_utf8_lines_replaced']} lines of {path} had invalid UTF-8 (decoded with U+FFFD)")
    if counts["blank_lines_skipped"]:
        note(args, f"{counts['blank_lines_skipped']} blank lines of {path} skipped")


def note(args, message: str) -> None:
    """A one-line note on stderr (silenced by --quiet)."""
    if not getattr(args, "quiet", False):
        print(f"text2token {args.command}: {message}", file=sys.stderr)


def output_folder(path: str) -> None:
    """Create the folder an output file goes in; a folder that cannot be made or written is one line."""
    from ..errors import Text2TokenError

    parent = Path(path).expanduser().absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise Text2TokenError(f"--output {path}: a file stands where its folder should be ({parent})") from None
    except OSError as exc:
        raise Text2TokenError(f"--output {path}: cannot create the folder {parent} ({exc.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise Text2TokenError(f"--output {path}: the folder {parent} is not writable")

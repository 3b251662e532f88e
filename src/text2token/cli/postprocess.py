"""``postprocess``: fit, refit or remove the isotropy correction of a model folder — or make a training-free embedder
from any LM (an untrained backbone plus a fitted correction, written as a complete folder)."""

from __future__ import annotations

from pathlib import Path

from ..modes import ISOTROPY_DIRECTIONS, ISOTROPY_FIT_TEXTS, ISOTROPY_MIN_FIT_TEXTS, Attention, Pooling
from .argtypes import at_least, max_length_arg, positive
from .arguments import device_args, input_args, model_positional
from .common import load_model


def cmd_postprocess(args) -> int:
    from ..errors import Text2TokenError
    from ..layout import MODEL_CONFIG_NAME
    from ..training.isotropy_fit import fit_on_corpus

    args.model = args.model or args.model_option
    is_folder = (Path(args.model).expanduser() / MODEL_CONFIG_NAME).is_file()
    output = args.output or (args.model if is_folder else None)
    if output is None:
        raise Text2TokenError(
            f"{args.model} is not a text2token folder, so it cannot be changed in place: give --output DIR "
            "for the new folder (the backbone plus the correction)"
        )
    if args.none and not is_folder:
        raise Text2TokenError(f"--none removes a folder's correction; {args.model} is not a text2token folder")
    model = load_model(args)
    before = model.correction
    if args.none:
        if before is None:
            print(f"{args.model} has no isotropy correction; nothing to remove")
            return 0
        model.set_correction(None)
        model.save_pretrained(output)
        print(f"removed the isotropy correction from {output}: it gives raw pooled vectors again")
        return 0
    correction = fit_on_corpus(
        model,
        args.corpus,
        texts=args.texts,
        directions=args.directions,
        seed=args.seed,
        field=args.field,
        errors=args.errors,
        batch_size=args.batch_size,
        show_progress_bar=not args.quiet,
    )
    model.save_pretrained(output)
    what = "refitted" if before is not None else "fitted"
    print(
        f"{what} the isotropy correction of {output}: mean of {correction.fitted_on['texts']} texts of "
        f"{correction.fitted_on['corpus']} (seed {args.seed}) subtracted, top {correction.num_directions} principal "
        "direction(s) removed; encode, index, serve, exports, sentence-transformers and mteb all apply it"
    )
    return 0


def add_postprocess(command) -> None:
    """The ``postprocess`` command's arguments."""
    p = command(
        "postprocess",
        "fit, refit or remove the isotropy correction a model folder applies to its vectors",
        "Subtracts the mean raw vector of a seeded sample of texts and projects out the top principal\n"
        "directions ('all-but-the-top'); stored in the folder (isotropy.safetensors, a sentence-transformers\n"
        "Dense module) and applied by every dense path. A text2token folder is rewritten in place (atomically)\n"
        "unless --output is given; any other model (e.g. 'default') needs --output and becomes a complete,\n"
        "training-free embedder folder. The vocabulary view (explain, sparse index) is not changed.",
    )
    model_positional(p)
    p.add_argument("--output", metavar="DIR", help="write the folder here (default: MODEL itself, if a folder)")
    input_args(
        p,
        "--corpus",
        required=False,
        help="texts to fit on: .txt or .jsonl, or bundled:brown / bundled:wiki (default: the bundled Brown corpus)",
        skip_blank=False,  # blank lines are skipped when a corpus is read for fitting
    )
    p.add_argument(
        "--texts",
        type=at_least("--texts", ISOTROPY_MIN_FIT_TEXTS, "a correction fitted on fewer is too noisy"),
        default=ISOTROPY_FIT_TEXTS,
        help="texts of the seeded sample it is fitted on",
    )
    p.add_argument(
        "--directions",
        type=at_least("--directions", 0, "0: subtract the mean only"),
        default=ISOTROPY_DIRECTIONS,
        help="top principal directions removed after the mean (0: the mean only)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the sample")
    p.add_argument("--none", action="store_true", help="remove the folder's correction instead (raw vectors again)")
    p.add_argument("--pooling", choices=Pooling.values(), help="for a backbone: its pooling (default: last)")
    p.add_argument("--attention", choices=Attention.values(), help="for a backbone: its attention (default: causal)")
    p.add_argument("--max-length", type=max_length_arg, help="override the maximum tokens per text (>= 8)")
    p.add_argument("--batch-size", type=positive("--batch-size"), default=32, help="texts per forward pass")
    device_args(p)

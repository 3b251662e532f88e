"""The ``text2token`` command line: a thin layer over the library. :mod:`.parser` defines the commands; one module
per group of commands holds their handlers (:mod:`.train`, :mod:`.encode`, :mod:`.retrieve`, :mod:`.evaluate`,
:mod:`.serve`), each a few lines that call library functions; this module parses, dispatches and turns errors into
one line and an exit status."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys

from .encode import cmd_encode, cmd_explain
from .evaluate import cmd_eval
from .parser import build_parser
from .postprocess import cmd_postprocess
from .retrieve import cmd_export, cmd_index, cmd_search
from .serve import cmd_serve
from .train import cmd_analyze, cmd_report, cmd_train

# Commands whose trailing positional list may continue after options (``train … --objective simcse stage1.steps=5``).
_INTERMIXED = {"train": "overrides", "explain": "texts"}


# The machine's disk, not text2token, failed: one line (outputs are written atomically, so nothing half-written
# appears under the output's name, and train/encode/index keep their checkpoints or partial progress).
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; positionals of :data:`_INTERMIXED` commands may appear anywhere, also after options
    (argparse would otherwise take only the first run of them)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    dest = _INTERMIXED.get(args.command)
    unknown = [x for x in extra if dest is None or x.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        setattr(args, dest, list(getattr(args, dest)) + extra)
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:  # Ctrl-C at any moment, start-up included: one line, exit 130
        command = next((a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("-")), "")
        print(f"text2token {command}: {str(exc) or 'interrupted'}".replace("  ", " "), file=sys.stderr)
        return 130


def run() -> None:
    """The console entry point (``text2token``, ``python -m text2token``): :func:`main`'s status as the exit code.

    After Ctrl-C the process ends with ``os._exit(130)``: CPython marks a KeyboardInterrupt that passed through
    ``exec`` of source text (as dataclass and namedtuple creation do while modules import) as unhandled even when
    it is caught later, and would then end the process by re-raising SIGINT (status -2 to a parent process)."""
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


def _main(argv: list[str] | None) -> int:
    args = _parse(argv)
    if args.version:
        from ..version import __version__

        print(f"text2token {__version__}")
        return 0
    if not args.command:
        build_parser().print_help()
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # text2token's own notes (e.g. "resumed from checkpoint N") show unless --quiet
    logging.getLogger("text2token").setLevel(logging.WARNING if args.quiet else logging.INFO)
    if os.environ.get("TEXT2TOKEN_VERBOSE"):
        logging.getLogger().setLevel(logging.INFO)
    quiet_before = os.environ.get("TEXT2TOKEN_QUIET")
    if args.quiet:
        os.environ["TEXT2TOKEN_QUIET"] = "1"  # progress bars off everywhere (text2token.progress)
    import warnings

    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # raised inside peft, not actionable
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from ..errors import Text2TokenError

    handler = {
        "train": cmd_train,
        "encode": cmd_encode,
        "explain": cmd_explain,
        "eval": cmd_eval,
        "index": cmd_index,
        "search": cmd_search,
        "export": cmd_export,
        "report": cmd_report,
        "analyze": cmd_analyze,
        "serve": cmd_serve,
        "postprocess": cmd_postprocess,
    }[args.command]
    try:
        return handler(args)
    except Text2TokenError as exc:
        print(f"text2token {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in _DISK_ERRORS:
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        resume = (
            " (work saved so far is kept: rerun with --resume)" if args.command in ("train", "encode", "index") else ""
        )
        print(
            f"text2token {args.command}: error: {exc.strerror or os.strerror(exc.errno)}{where}{resume}",
            file=sys.stderr,
        )
        return 2
    finally:
        if quiet_before is None:
            os.environ.pop("TEXT2TOKEN_QUIET", None)
        else:
            os.environ["TEXT2TOKEN_QUIET"] = quiet_before

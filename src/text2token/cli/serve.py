"""``serve``: an OpenAI-compatible embeddings endpoint for a model folder."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path

from ..modes import SERVE_API_KEY_ENV, SERVE_HOST, SERVE_MAX_CHARS, SERVE_MAX_TEXTS, SERVE_PORT
from .argtypes import positive
from .arguments import device_args, model_positional
from .common import note


def cmd_serve(args) -> int:
    from ..backbone import check_hub_id, resolve_model_path
    from ..serving import bind_address, build_server, check_exposure, read_api_key

    args.model = args.model or args.model_option
    bind = bind_address(args.host)  # before anything starts
    api_key = read_api_key(args.api_key_file)
    check_exposure(args.host, api_key, args.no_api_key)
    model = resolve_model_path(args.model)  # converted once here, not by each worker
    if model == args.model and not Path(model).exists():
        check_hub_id(model)
    server = build_server(
        model,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
        workers=args.workers,
        api_key=api_key,
        max_texts=args.max_texts,
        max_chars=args.max_chars,
        model_id=os.path.basename(os.path.normpath(args.model)),  # what /v1/models lists: the folder's name
    )
    note(
        args,
        f"serving {args.model} at http://{args.host}:{args.port}/v1/embeddings"
        + (" (API key required)" if api_key else ""),
    )
    with stop_on_sigterm():
        try:
            server.run(
                host=bind, port=args.port, generate_client_file=False, log_level="warning" if args.quiet else "info"
            )
        finally:  # a stop before LitServe's own shutdown code runs (e.g. while workers load) leaves no worker behind
            for worker in getattr(server, "inference_workers", []):
                if worker.is_alive():
                    worker.terminate()
                    worker.join(timeout=10)
                    if worker.is_alive():
                        worker.kill()
    return 0


@contextmanager
def stop_on_sigterm():
    """Within the block, SIGTERM (what systemd, Docker and Kubernetes send to stop a service) stops this process as
    Ctrl-C does: LitServe's graceful shutdown, in which uvicorn finishes the requests in flight and every worker
    process is terminated. Without it the main process died at once and its workers stayed, holding the port.
    Processes forked from this one keep SIGTERM's default meaning."""
    main_pid = os.getpid()

    def stop(signum, frame):
        if os.getpid() != main_pid:  # a forked child that inherited this handler: the default action
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def add_serve(command) -> None:
    """The ``serve`` command's arguments."""
    p = command(
        "serve",
        "serve a model over an OpenAI-compatible HTTP API (POST /v1/embeddings, via LitServe)",
        "Starts LitServe with the model loaded in each worker; the vectors are encode's own (template, pooling,\n"
        "truncation), L2-normalised. Closed by default: binds to 127.0.0.1; another --host needs an API key\n"
        "(--api-key-file or $TEXT2TOKEN_API_KEY; clients send 'Authorization: Bearer KEY'). Requests are\n"
        "bounded (--max-texts, --max-chars): a 413 names the bound. Needs: pip install 'text2token[serve]'.",
    )
    model_positional(p)
    p.add_argument(
        "--host",
        default=SERVE_HOST,
        help="address to bind: 127.0.0.1 or localhost (this machine), 0.0.0.0 or :: (every interface; needs a key)",
    )
    p.add_argument("--port", type=positive("--port"), default=SERVE_PORT, help="TCP port")
    p.add_argument(
        "--api-key-file",
        metavar="FILE",
        help=f"file whose first line is the API key (else ${SERVE_API_KEY_ENV}; neither: no key)",
    )
    p.add_argument(
        "--no-api-key",
        action="store_true",
        help="allow a --host beyond this machine without an API key (e.g. behind your own gateway)",
    )
    p.add_argument(
        "--max-texts", type=positive("--max-texts"), default=SERVE_MAX_TEXTS, help="texts per request, at most"
    )
    p.add_argument(
        "--max-chars", type=positive("--max-chars"), default=SERVE_MAX_CHARS, help="characters per text, at most"
    )
    p.add_argument("--batch-size", type=positive("--batch-size"), default=32, help="texts per forward pass")
    p.add_argument(
        "--max-batch-size",
        type=positive("--max-batch-size"),
        default=1,
        help="> 1: batch up to this many concurrent requests into one forward pass (LitServe's dynamic "
        "batching; each request must then carry one text)",
    )
    p.add_argument(
        "--batch-timeout", type=float, default=0.01, help="with --max-batch-size > 1: seconds a batch waits to fill"
    )
    p.add_argument("--workers", type=positive("--workers"), default=1, help="model workers (each holds a copy)")
    device_args(p)

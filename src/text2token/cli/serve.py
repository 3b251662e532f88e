"""``serve``: an OpenAI-compatible embeddings endpoint for a model folder."""

from __future__ import annotations

from pathlib import Path

from .common import note


def cmd_serve(args) -> int:
    from ..backbone import check_hub_id, resolve_model_path
    from ..serving import build_server, check_exposure, read_api_key

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
    )
    note(
        args,
        f"serving {args.model} at http://{args.host}:{args.port}/v1/embeddings"
        + (" (API key required)" if api_key else ""),
    )
    server.run(
        host=args.host, port=args.port, generate_client_file=False, log_level="warning" if args.quiet else "info"
    )
    return 0

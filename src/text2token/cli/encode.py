"""``encode`` and ``explain``: embeddings of a file (streaming, resumable) and the tokens that explain them."""

from __future__ import annotations

import json
from pathlib import Path

from .common import input_notes, load_model, note, output_folder, read_texts


def cmd_encode(args) -> int:
    from ..errors import Text2TokenError
    from ..resumable import Source, process_placement
    from ..streaming import FORMATS, encode_file

    if Path(args.output).suffix.lower() not in FORMATS:
        raise Text2TokenError(f"--output must end in .npy, .jsonl or .parquet, got '{args.output}'")
    if args.input != "-" and Path(args.output).expanduser().resolve() == Path(args.input).expanduser().resolve():
        raise Text2TokenError(
            f"--output {args.output} is the input file: choose another output (it would be overwritten)"
        )
    source = Source(args.input, args.field, args.skip_blank, args.errors)  # every line checked before the model loads
    output_folder(args.output)  # created (as explain, index and export do) and checked before the model loads
    args.device, main_process = process_placement(args.device)  # under accelerate launch: each on its own device
    args.quiet = args.quiet or not main_process
    input_notes(args, args.input, source.counts)
    model = load_model(args)
    prompt = model.resolve_prompt(args.prompt, args.prompt_name)
    summary = encode_file(
        model,
        source,
        args.output,
        batch_size=args.batch_size,
        normalize=args.normalize,
        prompt=prompt,
        resume=args.resume,
        chunk=args.chunk_size,
        show_progress_bar=not args.quiet,
    )
    if summary["truncated"]:
        note(
            args,
            f"{summary['truncated']} of {summary['rows']} texts are longer than {model.max_length} tokens and "
            "are truncated (--max-length to change)",
        )
    resumed = f" (resumed at row {summary['resumed_from']})" if summary["resumed_from"] else ""
    note(args, f"wrote {summary['rows']}×{summary['dim']} float32 embeddings to {args.output}{resumed}")
    return 0


def cmd_explain(args) -> int:
    from ..errors import Text2TokenError
    from ..textio import atomic_path

    if args.input and args.texts:
        raise Text2TokenError("give TEXT arguments or --input FILE, not both")
    if args.compare and (args.input or len(args.texts) != 2):
        raise Text2TokenError("--compare takes exactly two TEXT arguments")
    if not args.input and not args.texts:
        raise Text2TokenError("nothing to explain: give TEXT arguments or --input FILE")
    if args.output and not args.input:
        raise Text2TokenError("--output goes with --input")
    ids, texts = read_texts(args, args.input) if args.input else (None, args.texts)
    model = load_model(args)
    if args.compare:
        result = model.compare(texts[0], texts[1], top_k=args.top_k)
        if args.json:
            print(json.dumps({"text_a": texts[0], "text_b": texts[1], **result}, ensure_ascii=False))
        else:
            print(f"A: {texts[0]}\nB: {texts[1]}")
            print(
                f"cosine {result['cosine']:.4f}; vocabulary overlap sum_v p_a*p_b = {result['overlap']:.4g}, carried by:"
            )
            print(f"  {'share':>7}  {'p_a':>7}  {'p_b':>7}  token")
            for t in result["tokens"]:
                print(f"  {t['share']:7.1%}  {t['p_a']:7.4f}  {t['p_b']:7.4f}  {t['token']!r}")
        return 0
    explained = model.explain(texts, top_k=args.top_k)
    rows = [
        json.dumps(
            {**({"id": ids[n]} if ids else {}), "text": text, "tokens": [{"token": t, "prob": p} for t, p in tokens]},
            ensure_ascii=False,
        )
        for n, (text, tokens) in enumerate(zip(texts, explained))
    ]
    if args.input:
        if args.output:
            with atomic_path(args.output) as tmp:
                tmp.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
            note(args, f"wrote {len(texts)} explanations to {args.output}")
        else:
            for r in rows:
                print(r)
        return 0
    for text, tokens, row in zip(texts, explained, rows):
        if args.json:
            print(row)
        else:
            print(text)
            for tok, prob in tokens:
                print(f"  {prob:8.4f}  {tok!r}")
    return 0

"""``encode`` and ``explain``: embeddings of a file (streaming, resumable) and the tokens that explain them."""

from __future__ import annotations

import json
from pathlib import Path

from ..modes import CHUNK_SIZE
from .argtypes import positive
from .arguments import INPUT_HELP, input_args, model_args
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


def add_encode(command) -> None:
    """The ``encode`` command's arguments."""
    p = command(
        "encode",
        "embed texts",
        'Writes one row per input text, in input order: .npy (float32 matrix), .jsonl ({"id", "embedding"}\n'
        "per line; ids from the input's 'id' field or the row number from 0), or .parquet (columns id,\n"
        "embedding). The input is streamed in chunks and rows are written as they are computed, so memory\n"
        "does not grow with the corpus; the output appears under its name only when complete, and an\n"
        "interrupted run continues with --resume (the same bytes as an uninterrupted run).",
    )
    model_args(p)
    input_args(p, "--input", required=True)
    p.add_argument("--output", required=True, help="output file: .npy, .jsonl or .parquet")
    p.add_argument("--batch-size", type=positive("--batch-size"), default=32, help="texts per forward pass")
    p.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    p.add_argument("--prompt", help="text put before every input (e.g. 'query: '); see also --prompt-name")
    p.add_argument(
        "--prompt-name",
        choices=["query", "document"],
        help="a prompt saved with the model (text2token_config.json 'prompts')",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted encode from its last written chunk (file input, .npy or .jsonl output)",
    )
    p.add_argument(
        "--chunk-size",
        type=positive("--chunk-size"),
        default=CHUNK_SIZE,
        help="texts read, encoded and written at a time (memory and resume granularity)",
    )


def add_explain(command) -> None:
    """The ``explain`` command's arguments."""
    p = command(
        "explain",
        "show the top LM-head tokens of each text's embedding",
        "The top-k tokens of softmax(lm_head(embedding)): what the embedding 'means'. --compare shows why\n"
        "two texts are similar: their cosine and the tokens carrying sum_v p_a(v)·p_b(v).",
    )
    model_args(p)
    p.add_argument(
        "--top-k", type=positive("--top-k"), default=10, help="tokens per text (at most the vocabulary size)"
    )
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a readable list")
    input_args(
        p,
        "--input",
        required=False,
        help="explain every text of this file (JSON lines out, with the input's ids; see --output). " + INPUT_HELP,
    )
    p.add_argument("--output", help="with --input: write the JSON lines to this file instead of stdout")
    p.add_argument(
        "--compare",
        action="store_true",
        help="two TEXTs: their cosine and the tokens that carry the overlap of their vocabulary distributions",
    )
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to explain")

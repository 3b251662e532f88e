"""Streaming encode and index at corpus scale: peak memory (max RSS) of `text2token encode` (or `index`) on N and
10·N texts, which should not grow with the corpus, and its throughput. A randomly initialised small llama on the SmolLM2
tokenizer stands in for a real model (memory and streaming do not depend on the weights; a 135M model would
take hours for a million texts on 2 CPU cores). Texts are the bundled Brown sentences, repeated.

    python benchmarks/encode_scale.py --rows 100000,1000000 --json benchmarks/results/encode_scale.json
    python benchmarks/encode_scale.py --command index --ann off --json benchmarks/results/index_scale.json
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="100000,1000000", help="corpus sizes to encode")
    p.add_argument("--command", choices=["encode", "index"], default="encode", help="what to run on the corpus")
    p.add_argument(
        "--ann",
        choices=["auto", "on", "off"],
        default="off",
        help="index --ann (the usearch graph is held in memory while it is built, so it grows with the corpus)",
    )
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.rows.split(",")]

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from text2token.backbone import resolve_model_path
    from text2token.textio import read_texts
    from text2token.training.corpus import BUNDLED_CORPUS

    rows = {}
    with tempfile.TemporaryDirectory() as d:
        tok = AutoTokenizer.from_pretrained(resolve_model_path("default"))
        torch.manual_seed(0)
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=len(tok),
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                pad_token_id=tok.pad_token_id,
                tie_word_embeddings=True,
            )
        )
        model.save_pretrained(f"{d}/model")
        tok.save_pretrained(f"{d}/model")
        corpus = read_texts(BUNDLED_CORPUS, skip_blank=True)
        for n in sizes:
            src = Path(d) / f"c{n}.txt"
            with open(src, "w", encoding="utf-8") as fh:
                for i in range(n):
                    fh.write(corpus[i % len(corpus)] + "\n")
            out = Path(d) / (f"e{n}.npy" if args.command == "encode" else f"index{n}")
            wrapper = (
                "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
            )
            what = ["encode", "--input"] if args.command == "encode" else ["index", "--ann", args.ann, "--corpus"]
            cmd = [
                sys.executable,
                "-c",
                wrapper,
                sys.executable,
                "-m",
                "text2token",
                what[0],
                "-q",
                "--model",
                f"{d}/model",
                "--pooling",
                "mean",
                *what[1:],
                str(src),
                "--output",
                str(out),
                "--batch-size",
                "256",
            ]
            t0 = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True)  # noqa: S603 — our own CLI, arguments built here
            seconds = time.perf_counter() - t0
            if res.returncode:
                raise RuntimeError(res.stderr[-2000:])
            rss_mb = int(res.stdout.strip().splitlines()[-1]) / 1024
            size = sum(f.stat().st_size for f in out.iterdir()) if out.is_dir() else out.stat().st_size
            rows[n] = {
                "peak_rss_mb": round(rss_mb),
                "seconds": round(seconds, 1),
                "texts_per_s": round(n / seconds),
                "output_mb": round(size / 2**20),
            }
            print(
                f"{n:>9,} texts: peak RSS {rss_mb:,.0f} MB, {seconds:,.0f} s ({n / seconds:,.0f} texts/s), "
                f"output {rows[n]['output_mb']} MB",
                flush=True,
            )
            src.unlink()
            shutil.rmtree(out) if out.is_dir() else out.unlink()
    small, large = min(sizes), max(sizes)
    result = {
        "command": args.command,
        **({"ann": args.ann} if args.command == "index" else {}),
        "rows": rows,
        "rss_ratio_largest_vs_smallest": round(rows[large]["peak_rss_mb"] / rows[small]["peak_rss_mb"], 3),
    }
    print(f"peak RSS ratio {large:,} vs {small:,} texts: {result['rss_ratio_largest_vs_smallest']:.2f} (goal ≤ 1.2)")
    if args.json:
        from text2token.textio import write_json_atomic

        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Is bfloat16 worth it on this CPU? A square matmul and a SmolLM2-135M encode, float32 vs bfloat16, in one process.

The trainer's ``mixed_precision: auto`` and the CLI's ``--dtype auto`` pick bfloat16 only where the device computes it
natively (CUDA; CPUs with AVX512-BF16 or AMX: ``text2token.devices.native_bf16``). This prints what the
other choice costs here: on CPUs with native bf16 a bf16 matmul runs ~2.5x faster than fp32; on an AVX2-only CPU torch
emulates it. Each bf16 figure is cut short after ``--budget`` seconds (one repetition at least).

    python benchmarks/cpu_bf16.py --json benchmarks/results/cpu_bf16.json
    python benchmarks/cpu_bf16.py --skip-encode       # the matmul only (seconds)
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def gflops(a, b, budget: float) -> tuple[float, int]:
    """GFLOP/s of ``a @ b`` repeated until ``budget`` seconds have passed (at least once, after one warm-up)."""
    a @ b
    reps, start = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            return 2 * a.shape[0] * a.shape[1] * b.shape[1] * reps / elapsed / 1e9, reps


def encode_rate(dtype, texts: list[str], budget: float, batch: int) -> tuple[float, int]:
    """Texts/s of ``Text2TokenModel.encode`` on the bundled backbone in ``dtype``: batches of ``batch`` texts until
    ``budget`` seconds have passed (at least one batch) or the texts run out, after a one-text warm-up."""
    from text2token import Text2TokenModel

    model = Text2TokenModel.from_pretrained("default", dtype=dtype)
    model.encode(texts[:1], batch_size=1)  # warm-up
    done, start = 0, time.perf_counter()
    while done < len(texts):
        chunk = texts[done : done + batch]
        model.encode(chunk, batch_size=batch)
        done += len(chunk)
        if time.perf_counter() - start >= budget:
            break
    return done / (time.perf_counter() - start), done


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1024, help="matmul size n (n×n @ n×n)")
    p.add_argument("--budget", type=float, default=10.0, help="seconds per measurement (bf16 may need one long rep)")
    p.add_argument("--texts", type=int, default=64, help="Brown sentences encoded per dtype at most")
    p.add_argument("--batch", type=int, default=4, help="texts per encode batch")
    p.add_argument("--skip-encode", action="store_true", help="measure the matmul only")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)

    import torch

    from text2token.devices import native_bf16

    a, b = torch.randn(args.size, args.size), torch.randn(args.size, args.size)
    out = {
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16(torch.device("cpu")),
        "matmul_size": args.size,
    }
    fp32, n32 = gflops(a, b, args.budget)
    bf16, n16 = gflops(a.bfloat16(), b.bfloat16(), args.budget)
    out["matmul"] = {
        "fp32_gflops": round(fp32, 2),
        "bf16_gflops": round(bf16, 3),
        "reps": {"fp32": n32, "bf16": n16},
        "bf16_speed_vs_fp32": round(bf16 / fp32, 4),
    }
    print(f"CPU capability {out['cpu_capability']}, native bf16: {out['native_bf16']}")
    print(f"matmul {args.size}²: fp32 {fp32:.1f} GFLOP/s, bf16 {bf16:.2f} GFLOP/s  (bf16 = {bf16 / fp32:.3f}× fp32)")
    if not args.skip_encode:
        from text2token.training.corpus import BUNDLED_CORPUS

        texts = BUNDLED_CORPUS.read_text(encoding="utf-8").splitlines()[: args.texts]
        r32, d32 = encode_rate(torch.float32, texts, args.budget, args.batch)
        r16, d16 = encode_rate(torch.bfloat16, texts, args.budget, args.batch)
        out["encode"] = {
            "fp32_texts_per_s": round(r32, 2),
            "bf16_texts_per_s": round(r16, 3),
            "texts": {"fp32": d32, "bf16": d16},
            "batch": args.batch,
            "bf16_speed_vs_fp32": round(r16 / r32, 4),
        }
        print(f"SmolLM2-135M encode: fp32 {r32:.2f} texts/s, bf16 {r16:.3f} texts/s  (bf16 = {r16 / r32:.3f}× fp32)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

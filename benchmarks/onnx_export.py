"""ONNX / OpenVINO exports against torch, in one run: CPU texts/s of each runtime on the same texts, the cosine of
each to `encode`, and the offline-suite score of the int8-quantised ONNX graph against torch fp32.

Runtimes: torch fp32 (`encode`, the baseline), torch bf16, onnxruntime fp32, onnxruntime int8 (dynamic
quantisation of the weights), OpenVINO fp32 and OpenVINO bf16 (its CPU default where the CPU has native bf16).
Texts: bundled corpus lines, batch 32, after one warm-up batch.
Goals: int8 >= 1.5x torch fp32 texts/s, and within 1 point of torch fp32 on the suite.

    python benchmarks/onnx_export.py --model runs/combined/model --json benchmarks/results/onnx_export.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def rate(encode, texts: list[str], batch_size: int) -> float:
    encode(texts[:batch_size], batch_size=batch_size)  # warm-up
    t = time.perf_counter()
    encode(texts, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - t)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="a text2token folder or a named backbone")
    p.add_argument("--texts", type=int, default=512, help="corpus lines timed per runtime")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--suite", default="demo", help="offline suite scored for torch fp32, ONNX fp32 and ONNX int8")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)

    import torch

    from text2token import Text2TokenModel
    from text2token.evaluation.mteb_runner import MTEBEncoder
    from text2token.evaluation.suite import evaluate_suite
    from text2token.onnx_export import ExportedEmbedder, export
    from text2token.textio import read_texts
    from text2token.training.corpus import BUNDLED_CORPUS

    texts = read_texts(str(BUNDLED_CORPUS))[: args.texts]
    model = Text2TokenModel.from_pretrained(args.model, device="cpu")
    reference = model.encode(texts[:64], batch_size=args.batch_size)
    result: dict = {
        "model": args.model,
        "texts": len(texts),
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "runtimes": {},
    }
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        info = export(model, Path(d) / "exp", int8=True, openvino=True)
        result["export_seconds"] = round(time.perf_counter() - t, 1)
        result["export_check_cosine"] = info["check_cosine"]
        sizes = {k: (Path(d) / "exp" / f).stat().st_size for k, f in info["files"].items()}
        runtimes = {"torch fp32": model.encode}
        for kind in ("onnx", "onnx_int8", "openvino"):
            runtimes[
                {"onnx": "onnxruntime fp32", "onnx_int8": "onnxruntime int8", "openvino": "OpenVINO fp32"}[kind]
            ] = ExportedEmbedder(Path(d) / "exp", kind).encode
        runtimes["OpenVINO bf16"] = ExportedEmbedder(Path(d) / "exp", "openvino", openvino_precision="bf16").encode
        for name, encode in runtimes.items():
            texts_per_s = rate(encode, texts, args.batch_size)
            got = encode(texts[:64], batch_size=args.batch_size)
            cos = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
            result["runtimes"][name] = {
                "texts_per_s": round(texts_per_s, 2),
                "min_cosine_to_encode": round(float(cos.min()), 6),
            }
            print(f"{name:18s} {texts_per_s:7.1f} texts/s  min cosine to encode {cos.min():.6f}", flush=True)
        bf16 = Text2TokenModel.from_pretrained(args.model, device="cpu", dtype=torch.bfloat16)
        result["runtimes"]["torch bf16"] = {"texts_per_s": round(rate(bf16.encode, texts, args.batch_size), 2)}
        print(f"{'torch bf16':18s} {result['runtimes']['torch bf16']['texts_per_s']:7.1f} texts/s", flush=True)
        del bf16
        base = result["runtimes"]["torch fp32"]["texts_per_s"]
        for row in result["runtimes"].values():
            row["vs_torch_fp32"] = round(row["texts_per_s"] / base, 2)
        result["bytes"] = sizes
        suite = {}
        encoder = MTEBEncoder(model, batch_size=args.batch_size)
        for name, kind in (("torch fp32", None), ("onnxruntime fp32", "onnx"), ("onnxruntime int8", "onnx_int8")):
            enc = encoder
            if kind:
                enc = copy.copy(encoder)
                enc.model = ExportedEmbedder(Path(d) / "exp", kind)
            suite[name] = evaluate_suite(enc, args.suite, batch_size=args.batch_size, progress=None)
            print(f"{args.suite} suite, {name}: mean {suite[name]['mean']:.2f}", flush=True)
        result["suite"] = {
            "name": args.suite,
            **{
                n: {"mean": r["mean"], "tasks": {t: v["main_score"] for t, v in r["tasks"].items()}}
                for n, r in suite.items()
            },
        }
    int8 = result["runtimes"]["onnxruntime int8"]
    change = round(suite["onnxruntime int8"]["mean"] - suite["torch fp32"]["mean"], 2)
    result["goals"] = {
        "int8_speed_vs_torch_fp32": int8["vs_torch_fp32"],
        "int8_speed_goal_met": int8["vs_torch_fp32"] >= 1.5,
        "int8_suite_change": change,
        "int8_suite_goal_met": abs(change) <= 1.0,
        "fp32_exports_cosine_goal_met": min(result["export_check_cosine"][k] for k in ("onnx", "openvino")) >= 0.9999,
    }
    print("\n| runtime | texts/s | × torch fp32 | min cosine to encode |\n|---|---|---|---|")
    for name, row in result["runtimes"].items():
        print(f"| {name} | {row['texts_per_s']} | {row['vs_torch_fp32']} | {row.get('min_cosine_to_encode', '—')} |")
    print(
        f"\n{args.suite} suite mean: "
        + ", ".join(f"{n} {r['mean']:.2f}" for n, r in suite.items())
        + f"; int8 change {change:+.2f}"
    )
    print(f"goals: {result['goals']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

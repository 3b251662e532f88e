"""Speed and memory of Text2Token against baselines measured in the same run, reported as ratios.

1. Training step (LoRA r16 on q/k/v/o, batch × length as configured, fp32 on CPU): Text2Token (pooled
   vectors only through the LM head, sparse KL) vs SimCSE (LLM2Vec's step: two dropout views in one
   forward of 2B texts) vs a naive Text2Token step that computes full-sequence logits (B×L×V) and picks
   the pooled position. Each system runs in its own fresh process so that its peak memory (max RSS,
   or CUDA max allocated) is its own. Default backbone and a tiny 2-layer llama.
2. Encoding: ``Text2TokenModel.encode`` vs ``sentence_transformers.SentenceTransformer.encode`` on the
   same weights with the same (mean) pooling; texts/s, tokens/s and the minimum cosine between the two.
3. Data-driven target construction: texts/s over 100k corpus sentences, stored bytes per target.
4. The real trainer (``text2token train``, stage 1 on the bundled corpus, SmolLM2-135M): fp32 vs the bf16
   frozen backbone vs bf16 with packed batches vs bf16 with activation checkpointing, median step time (first step
   excluded) and peak RSS, each
   system in a fresh process, rounds alternating.

    python benchmarks/speed.py --quick --json speed.json    # a few minutes on 2 CPU cores
    python benchmarks/speed.py                               # more steps and texts
    python benchmarks/speed.py --smoke                       # sections 1-3 at tiny sizes on the tiny llama: it runs
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _corpus(n: int) -> list[str]:
    from text2token.textio import read_texts
    from text2token.training.corpus import BUNDLED_CORPUS

    texts = read_texts(BUNDLED_CORPUS, skip_blank=True)
    reps = -(-n // len(texts))
    return (texts * reps)[:n]


def _peak_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tiny_model(folder: Path) -> str:
    """A randomly initialised 2-layer llama on the default model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from text2token.backbone import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def train_step_worker(system: str, model_name: str, batch: int, length: int, steps: int, queue) -> None:
    """Time ``steps`` optimizer steps (after one warm-up step) of one system; report s/step and peak memory."""
    import torch
    from peft import LoraConfig, get_peft_model

    from text2token import Text2TokenModel
    from text2token.objectives import set_attention_dropout, simcse_loss, sparse_kl_loss
    from text2token.targets import DataDrivenTargetBuilder

    torch.manual_seed(0)
    model = Text2TokenModel.from_pretrained(model_name, pooling="last", max_length=length, dtype=torch.float32)
    texts = _corpus(batch * (steps + 1) * 4)
    texts = sorted(texts, key=len)[len(texts) // 2 :][: batch * (steps + 1)]  # longer half: near-full batches
    targets, _ = DataDrivenTargetBuilder(model.tokenizer).build(texts)
    peft_model = get_peft_model(
        model.backbone,
        LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
    )
    if system == "simcse":
        set_attention_dropout(model.backbone, 0.3)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-5)
    model.train()
    dev = model.device
    times, tokens = [], 0
    for step in range(steps + 1):
        rows = list(range(step * batch, (step + 1) * batch))
        rows = [r for r in rows if r < len(targets)]
        enc = model.tokenize([texts[targets.text_index[r]] for r in rows])
        ids, mask = enc["input_ids"].to(dev), enc["attention_mask"].to(dev)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if system == "text2token":
            logits = model.vocab_logits(model(ids, mask))
        elif system == "naive":  # the LM's full output: logits for every position, then the last real one
            full = peft_model(input_ids=ids, attention_mask=mask).logits  # B×L×V
            last = mask.sum(dim=1) - 1 if model.tokenizer.padding_side == "right" else torch.full_like(mask[:, 0], -1)
            logits = full[torch.arange(full.shape[0]), last].float()
        if system in ("text2token", "naive"):
            tid, tw = targets.batch(rows)
            loss = sparse_kl_loss(logits, tid.to(dev), tw.to(dev))
        else:
            pooled = model(torch.cat([ids, ids]), torch.cat([mask, mask]))
            a, b = pooled.chunk(2)
            loss = simcse_loss(a, b, 0.05)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if step > 0:
            times.append(time.perf_counter() - t0)
            tokens += int(mask.sum())
    queue.put({"step_times": times, "peak_memory_mb": round(_peak_mb(), 1), "tokens": tokens})


def measure_train(model_name: str, label: str, batch: int, length: int, steps: int, rounds: int = 1) -> dict:
    """Each round runs the three systems one after another, each in a fresh process; step times are
    pooled over rounds (median), so slow drifts of a shared machine hit every system alike."""
    ctx = mp.get_context("spawn")
    runs: dict[str, list[dict]] = {"text2token": [], "simcse": [], "naive": []}
    for r in range(rounds):
        for system in runs:
            q = ctx.Queue()
            proc = ctx.Process(target=train_step_worker, args=(system, model_name, batch, length, steps, q))
            proc.start()
            proc.join()
            if proc.exitcode != 0:
                raise RuntimeError(f"{system} step on {label} failed (exit {proc.exitcode})")
            run = q.get()
            runs[system].append(run)
            print(
                f"  {label:10s} {system:10s} round {r + 1}/{rounds}: {statistics.median(run['step_times']):.3f} s/step  "
                f"peak {run['peak_memory_mb']:.0f} MB"
            )
    out: dict = {}
    for system, rs in runs.items():
        times = [t for run in rs for t in run["step_times"]]
        out[system] = {
            "seconds_per_step": statistics.median(times),
            "step_times": [round(t, 3) for t in times],
            "peak_memory_mb": statistics.median(run["peak_memory_mb"] for run in rs),
            "tokens_per_s": round(sum(run["tokens"] for run in rs) / sum(times), 1),
            "steps": steps,
            "rounds": rounds,
        }
    t, s, n = out["text2token"], out["simcse"], out["naive"]
    out["step_ratio_vs_simcse"] = round(t["seconds_per_step"] / s["seconds_per_step"], 3)
    out["peak_mem_ratio_vs_simcse"] = round(t["peak_memory_mb"] / s["peak_memory_mb"], 3)
    out["step_ratio_vs_naive"] = round(t["seconds_per_step"] / n["seconds_per_step"], 3)
    out["peak_mem_ratio_vs_naive"] = round(t["peak_memory_mb"] / n["peak_memory_mb"], 3)
    out["step_ratio_vs_simcse_by_round"] = [
        round(statistics.median(a["step_times"]) / statistics.median(b["step_times"]), 3)
        for a, b in zip(runs["text2token"], runs["simcse"])
    ]
    return out


def measure_encode_length(batch: int, lengths=(128, 512), repeats: int = 2) -> dict:
    """What the encoding length costs: SmolLM2 (PromptEOL, last-token) encoding short texts (Brown sentences) and
    long ones (the MiniNewsgroups posts of the bundled clustering task) at each length — time, tokens and how many
    texts were cut. Padding is per batch, so short texts cost the same at any length."""
    import torch

    from text2token import Text2TokenModel
    from text2token.evaluation.suite import load_task

    sets = {
        "short (Brown sentences)": _corpus(128),
        "long (newsgroup posts)": [r["text"] for r in load_task("MiniNewsgroupsClustering").data["test"]],
    }
    model = Text2TokenModel.from_pretrained("default", dtype=torch.float32)
    out: dict = {}
    for label, texts in sets.items():
        times: dict[int, list[float]] = {length: [] for length in lengths}
        for _ in range(repeats):  # the lengths alternate, so changes in machine load hit both alike
            for length in lengths:
                model.max_length = length
                model.encode(texts[:batch], batch_size=batch)  # warm-up
                t0 = time.perf_counter()
                model.encode(texts, batch_size=batch, show_progress_bar=False)
                times[length].append(time.perf_counter() - t0)
        row = {}
        for length in lengths:
            model.max_length = length
            dt = float(np.median(times[length]))
            tokens = sum(len(x) for x in model.token_ids(texts))  # template included, truncated to the length
            row[length] = {
                "seconds": round(dt, 2),
                "runs_s": [round(t, 2) for t in times[length]],
                "texts_per_s": round(len(texts) / dt, 1),
                "tokens": tokens,
                "texts_truncated": model.count_truncated(texts),
            }
            print(
                f"  {label:24s} max_length {length:4d}: {len(texts) / dt:7.1f} texts/s, {tokens / dt:7.0f} tokens/s, "
                f"{row[length]['texts_truncated']}/{len(texts)} texts truncated"
            )
        row["time_ratio"] = round(row[lengths[-1]]["seconds"] / row[lengths[0]]["seconds"], 2)
        print(f"  {label:24s} time {lengths[-1]} vs {lengths[0]}: {row['time_ratio']:.2f}x")
        out[label] = row
    return out


def measure_encode(n_texts: int, batch: int, max_length: int, repeats: int = 3, model: str = "default") -> dict:
    import torch
    from sentence_transformers import SentenceTransformer, models

    from text2token import Text2TokenModel
    from text2token.backbone import resolve_model_path

    path = resolve_model_path(model)
    texts = _corpus(n_texts)
    ours = Text2TokenModel.from_pretrained(path, pooling="mean", max_length=max_length, dtype=torch.float32)
    # sentence-transformers 6 renders plain texts through the tokenizer's chat template when the folder
    # has one (SmolLM2-Instruct's adds a system prompt and role markers); text2token encodes the raw text
    # with pooling="mean", so pin the baseline to the plain text modality for a like-for-like comparison.
    word = models.Transformer(
        path,
        max_seq_length=max_length,
        modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
        module_output_name="token_embeddings",
    )
    if word.tokenizer.pad_token is None:
        word.tokenizer.pad_token = word.tokenizer.eos_token
    word.tokenizer.padding_side = "right"  # as text2token pads (and as its saved folders tell ST to)
    st = SentenceTransformer(
        modules=[word, models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")],
        device=str(ours.device),
    )
    n_tokens = int(sum(min(len(x), max_length) for x in ours.tokenizer(texts)["input_ids"]))
    ours.encode(texts[:batch], batch_size=batch)  # warm-up both
    st.encode(texts[:batch], batch_size=batch)
    systems = (
        ("text2token", lambda: ours.encode(texts, batch_size=batch, show_progress_bar=False)),
        (
            "sentence_transformers",
            lambda: st.encode(texts, batch_size=batch, convert_to_numpy=True, show_progress_bar=False),
        ),
    )
    times: dict[str, list[float]] = {name: [] for name, _ in systems}
    embs = {}
    for _ in range(repeats):  # alternate the two so drifts in machine load hit both alike
        for name, fn in systems:
            t0 = time.perf_counter()
            embs[name] = fn()
            times[name].append(time.perf_counter() - t0)
    results = {}
    for name, _ in systems:
        dt = float(np.median(times[name]))
        results[name] = {
            "seconds": round(dt, 2),
            "runs_s": [round(t, 2) for t in times[name]],
            "texts_per_s": round(len(texts) / dt, 1),
            "tokens_per_s": round(n_tokens / dt, 1),
            "emb": embs[name],
        }
        print(
            f"  encode {name:22s} {len(texts) / dt:8.1f} texts/s  {n_tokens / dt:9.1f} tokens/s  (median of {repeats})"
        )
    # stage-2 precomputation (prior pass + top-k target pass) over the same texts, against encoding
    from text2token.targets.model_derived import corpus_prior, model_derived_targets, truncate_top_k

    t0 = time.perf_counter()
    prior = corpus_prior(ours, texts, batch_size=batch)
    t_prior = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _, logits in ours.iter_vocab_logits(texts, batch):
        truncate_top_k(model_derived_targets(logits, prior, 0.01), 64)  # stage2 defaults
    t_targets = time.perf_counter() - t0
    t_enc = results["text2token"]["seconds"]
    results["model_derived"] = {
        "prior_texts_per_s": round(len(texts) / t_prior, 1),
        "targets_texts_per_s": round(len(texts) / t_targets, 1),
        "targets_time_ratio_vs_encode": round(t_targets / t_enc, 3),
    }
    print(f"  stage-2 prior pass       {len(texts) / t_prior:8.1f} texts/s")
    print(f"  stage-2 top-64 targets   {len(texts) / t_targets:8.1f} texts/s  ({t_targets / t_enc:.2f}x encode time)")
    a, b = results["text2token"].pop("emb"), results["sentence_transformers"].pop("emb")
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    results["throughput_ratio_vs_sentence_transformers"] = round(
        results["text2token"]["texts_per_s"] / results["sentence_transformers"]["texts_per_s"], 3
    )
    results["min_cosine_vs_sentence_transformers"] = float(cos.min())
    results["texts"] = len(texts)
    return results


def measure_targets(n_texts: int) -> dict:
    from transformers import AutoTokenizer

    from text2token.backbone import resolve_model_path
    from text2token.targets import DataDrivenTargetBuilder

    tok = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    texts = _corpus(n_texts)
    runs = {}
    for num_proc in sorted({1, os.cpu_count() or 1}):
        builder = DataDrivenTargetBuilder(tok)  # fresh: no word cache, as at the start of a real run
        t0 = time.perf_counter()
        targets, report = builder.build(texts, num_proc=num_proc)
        runs[num_proc] = time.perf_counter() - t0
        print(f"  targets with {num_proc} process(es): {len(texts) / runs[num_proc]:.0f} texts/s")
    best = min(runs, key=runs.get)
    dt = runs[best]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.safetensors"
        targets.save(path)
        size = path.stat().st_size
    words = float(np.mean([len(t.split()) for t in texts]))
    out = {
        "texts": len(texts),
        "mean_words": round(words, 1),
        "seconds": round(dt, 2),
        "num_proc": best,
        "texts_per_s_by_num_proc": {str(k): round(len(texts) / v, 1) for k, v in runs.items()},
        "texts_per_s": round(len(texts) / dt, 1),
        "bytes_per_target": round(size / max(1, report.kept), 1),
        "kept": report.kept,
    }
    print(
        f"  targets: {out['texts_per_s']:.0f} texts/s over {len(texts)} texts (~{words:.0f} words), "
        f"{out['bytes_per_target']:.0f} bytes per stored target"
    )
    return out


TRAINER_SYSTEMS = {
    "fp32": ["training.mixed_precision=no"],
    "bf16": ["training.mixed_precision=bf16"],
    "bf16 packed": ["training.mixed_precision=bf16", "training.tokens_per_step=1400"],
    "bf16 ckpt": ["training.mixed_precision=bf16", "training.gradient_checkpointing=true"],
}


def measure_trainer(steps: int, rounds: int, batch: int, length: int) -> dict:
    """The real trainer in a fresh process per system and round; step times from its own JSONL log."""
    import subprocess

    times: dict = {k: [] for k in TRAINER_SYSTEMS}
    peaks: dict = {k: [] for k in TRAINER_SYSTEMS}
    tokens: dict = {k: [] for k in TRAINER_SYSTEMS}
    for r in range(rounds):
        for name, extra in TRAINER_SYSTEMS.items():
            with tempfile.TemporaryDirectory() as d:
                cmd = [
                    sys.executable,
                    "-m",
                    "text2token",
                    "train",
                    "-q",
                    "--config",
                    str(ROOT / "configs" / "demo.yaml"),
                    "--output",
                    f"{d}/run",
                    "--stages",
                    "data",
                    f"stage1.steps={steps + 1}",
                    "training.save_every=0",
                    f"training.batch_size={batch}",
                    f"training.max_length={length}",
                    *extra,
                ]
                res = subprocess.run(cmd, capture_output=True, text=True)  # noqa: S603 — our own CLI, arguments built here
                if res.returncode:
                    raise RuntimeError(res.stderr[-2000:])
                rows = [
                    json.loads(line) for line in Path(f"{d}/run/stage1-data/train_log.jsonl").read_text().splitlines()
                ]
                times[name] += [row["seconds"] for row in rows[1:]]
                tokens[name] += [row["tokens"] for row in rows[1:]]
                peaks[name].append(json.loads(Path(f"{d}/run/train_summary.json").read_text())["peak_memory_mb"])
            print(f"  round {r + 1} {name}: median step {statistics.median(times[name]):.2f} s", flush=True)
    out = {
        name: {
            "median_step_s": round(statistics.median(times[name]), 3),
            "real_tokens_per_step": round(statistics.mean(tokens[name])),
            "tokens_per_s": round(statistics.mean(tokens[name]) / statistics.median(times[name]), 1),
            "peak_rss_mb": round(max(peaks[name])),
        }
        for name in TRAINER_SYSTEMS
    }
    base = out["fp32"]["median_step_s"]
    for name in ("bf16", "bf16 packed", "bf16 ckpt"):
        out[name]["step_ratio_vs_fp32"] = round(out[name]["median_step_s"] / base, 3)
        out[name]["tokens_per_s_ratio_vs_fp32"] = round(out[name]["tokens_per_s"] / out["fp32"]["tokens_per_s"], 3)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer steps and texts (a few minutes on 2 CPU cores)")
    p.add_argument("--json", help="write the figures to this JSON file")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="training-step rounds (each runs every system in a fresh process; step times pooled)",
    )
    p.add_argument("--skip", default="", help="comma-separated sections to skip: train,encode,length,targets,trainer")
    p.add_argument(
        "--smoke", action="store_true", help="training step, encoding and targets at tiny sizes on the tiny llama only"
    )
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    steps = 2 if args.quick or args.smoke else 5
    if args.smoke:
        skip |= {"length", "trainer"}
        args.batch_size, args.max_length = 4, 16
    tmp = tempfile.TemporaryDirectory()
    tiny = _tiny_model(Path(tmp.name) / "tiny") if args.smoke or "train" not in skip else None
    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}"
    )
    report: dict = {
        "quick": args.quick,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)",
    }
    if "train" not in skip:
        print(
            f"training step (batch {args.batch_size} × ≤{args.max_length} tokens, median of {steps} steps × "
            f"{args.rounds} round(s)):"
        )
        report["train_tiny"] = measure_train(tiny, "tiny", args.batch_size, args.max_length, steps, args.rounds)
        main_model = "train_tiny" if args.smoke else "train_default"
        if not args.smoke:
            report["train_default"] = measure_train(
                "default", "SmolLM2", args.batch_size, args.max_length, steps, args.rounds
            )
        report["train_step_ratio_vs_simcse"] = report[main_model]["step_ratio_vs_simcse"]
        report["train_peak_mem_ratio_vs_simcse"] = report[main_model]["peak_mem_ratio_vs_simcse"]
        report["train_step_ratio_vs_naive"] = report[main_model]["step_ratio_vs_naive"]
    if "encode" not in skip:
        print(f"encoding ({'tiny llama' if args.smoke else 'SmolLM2'}, mean pooling):")
        if args.smoke:
            enc = measure_encode(16, args.batch_size, 32, repeats=1, model=tiny)
        else:
            enc = measure_encode(256 if args.quick else 2048, args.batch_size, 128)
        report["encode"] = enc
        report["encode_throughput_ratio_vs_sentence_transformers"] = enc["throughput_ratio_vs_sentence_transformers"]
        report["encode_min_cosine_vs_sentence_transformers"] = enc["min_cosine_vs_sentence_transformers"]
        report["model_derived_targets_time_ratio_vs_encode"] = enc["model_derived"]["targets_time_ratio_vs_encode"]
    if "length" not in skip:
        print(f"encoding length (SmolLM2, PromptEOL last-token, batch {args.batch_size}):")
        report["encode_length"] = measure_encode_length(args.batch_size)
    if "targets" not in skip:
        print("data-driven targets:")
        tg = measure_targets(500 if args.smoke else 100_000)
        report["targets"] = tg
        report["targets_texts_per_s"] = tg["texts_per_s"]
        report["target_bytes_per_text"] = tg["bytes_per_target"]

    if "trainer" not in skip:
        print(f"real trainer, stage 1, SmolLM2 (batch {args.batch_size} × ≤{args.max_length} tokens):")
        tr = measure_trainer(steps, args.rounds, args.batch_size, args.max_length)
        report["trainer"] = tr
        report["trainer_bf16_step_ratio_vs_fp32"] = tr["bf16"]["step_ratio_vs_fp32"]
        report["trainer_bf16_packed_tokens_per_s_ratio_vs_fp32"] = tr["bf16 packed"]["tokens_per_s_ratio_vs_fp32"]

    print("\n| figure | value | goal |\n|---|---|---|")
    goals = {
        "train_step_ratio_vs_simcse": "≤ 0.45",
        "train_peak_mem_ratio_vs_simcse": "≤ 0.55",
        "train_step_ratio_vs_naive": "< 1",
        "encode_throughput_ratio_vs_sentence_transformers": "≥ 1.0",
        "encode_min_cosine_vs_sentence_transformers": "≥ 0.9999",
        "targets_texts_per_s": "≥ 20000",
        "target_bytes_per_text": "≤ 1024",
        "model_derived_targets_time_ratio_vs_encode": "≈ 1",
        "trainer_bf16_step_ratio_vs_fp32": "≤ 0.65",
        "trainer_bf16_packed_tokens_per_s_ratio_vs_fp32": "> 1",
    }
    for key, goal in goals.items():
        if key in report:
            print(f"| {key} | {report[key]:.4g} | {goal} |")
    if args.json:
        if skip and Path(args.json).is_file():  # a partial re-run keeps the other sections' figures
            report = {**json.loads(Path(args.json).read_text()), **report}
        from text2token.textio import write_json_atomic

        write_json_atomic(args.json, report)
        print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

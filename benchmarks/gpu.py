"""One prepared GPU benchmark (H100/H200 class): the card's bf16 matmul rate, then Text2Token and SimCSE
training steps and encoding throughput on randomly initialised models of real shapes (weights cannot
travel to a lent machine; speed does not depend on their values).

Shapes: a 0.5B Qwen2-like model and a 1B Llama-like model (Llama-3.2-1B's config). Sequences of at most
128 tokens with realistic length variation (lengths drawn uniformly from 32..128, padded per batch).
Useful throughput counts only real (non-padding) tokens at 4·N_non-embedding FLOPs each (frozen weights:
forward 2N, backward 2N for the activations) and is reported as a fraction of the measured matmul rate.

    python benchmarks/gpu.py --json gpu.json            # ~5 minutes on an H100/H200
    python benchmarks/gpu.py --tiny                     # a CPU smoke run of the same code paths

``--trainer`` measures the real trainer instead of the idealized loop: ``text2token``'s ``train()`` itself
(stage 1, stage 2 with on-the-fly targets, SimCSE; configs/demo.yaml with the bundled corpus and the SmolLM2
tokenizer) on randomly initialised real shapes saved as model folders, padded and packed, reporting median
step time, real tokens/s, the useful-FLOP fraction of the measured matmul rate and peak memory:

    python benchmarks/gpu.py --trainer --shapes smollm2-135m,llama-1b --json gpu_trainer.json
    python benchmarks/gpu.py --trainer --tiny           # CPU smoke run of the trainer path
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

SHAPES = {
    "smollm2-135m": dict(
        family="llama",
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
    ),
    "mistral-7b": dict(
        family="llama",
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        tie_word_embeddings=False,
    ),
    "qwen2-0.5b": dict(
        family="qwen2",
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
    "llama-1b": dict(
        family="llama",
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        tie_word_embeddings=True,
    ),
    "tiny": dict(
        family="llama",
        vocab_size=4096,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
}


def matmul_tflops(device, dtype, n=8192, iters=50) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    _sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - t0) / 1e12


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def build(shape: str, device, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    spec = dict(SHAPES[shape])
    family = spec.pop("family")
    cfg_cls, model_cls = (Qwen2Config, Qwen2ForCausalLM) if family == "qwen2" else (LlamaConfig, LlamaForCausalLM)
    cfg = cfg_cls(**spec, attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(device):
        model = model_cls(cfg).to(dtype)
    n_embed = model.get_input_embeddings().weight.numel()
    n_total = sum(p.numel() for p in model.parameters())
    return model, n_total - n_embed  # tied head: the embedding matrix is counted once


def batch(vocab, bsz, max_len, device, gen):
    lengths = torch.randint(max_len // 4, max_len + 1, (bsz,), generator=gen)
    width = int(lengths.max())
    ids = torch.randint(3, vocab, (bsz, width), generator=gen)
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    return ids.to(device), mask.to(device), int(lengths.sum())


def train_steps(model, system, bsz, max_len, steps, device, use_compile=False):
    from peft import LoraConfig, get_peft_model

    from text2token.objectives import simcse_loss, sparse_kl_loss
    from text2token.pooling import pool

    peft_model = get_peft_model(
        model,
        LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
    )
    trunk, head = peft_model.base_model.model.model, peft_model.base_model.model.lm_head
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-5, fused=device.type == "cuda")
    gen = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    fwd = torch.compile(trunk) if use_compile else trunk
    peft_model.train()
    times, real = [], 0
    for step in range(steps + 2):
        ids, mask, n_real = batch(vocab, bsz, max_len, device, gen)
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            if system == "simcse":
                h = fwd(input_ids=torch.cat([ids, ids]), attention_mask=torch.cat([mask, mask])).last_hidden_state
                a, b = pool(h, torch.cat([mask, mask]), "mean").chunk(2)
                loss = simcse_loss(a, b)
            else:
                h = fwd(input_ids=ids, attention_mask=mask).last_hidden_state
                pooled = pool(h, mask, "mean")
        if system != "simcse":
            logits = torch.nn.functional.linear(pooled.float(), head.weight.float())
            tid = torch.randint(3, vocab, (bsz, 12), device=device)
            loss = sparse_kl_loss(logits, tid, torch.full((bsz, 12), 1 / 12, device=device))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        if step >= 2:  # two warm-up steps (compile, allocator)
            times.append(time.perf_counter() - t0)
            real += n_real
    peft_model.unload()
    return sum(times) / len(times), real / sum(times)


@torch.inference_mode()
def encode_throughput(model, bsz, max_len, device, batches=10):
    from text2token.pooling import pool

    trunk = model.model
    gen = torch.Generator().manual_seed(1)
    model.eval()
    total, t_all = 0, 0.0
    for i in range(batches + 1):
        ids, mask, n_real = batch(model.config.vocab_size, bsz, max_len, device, gen)
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            pool(trunk(input_ids=ids, attention_mask=mask).last_hidden_state, mask, "mean").float().cpu()
        if i:
            t_all += time.perf_counter() - t0
            total += bsz
    return total / t_all


def largest_batch(model, system, max_len, device, candidates):
    """The largest batch from ``candidates`` whose step fits in memory."""
    best = candidates[0]
    for bsz in candidates:
        try:
            train_steps(model, system, bsz, max_len, 1, device)
            best = bsz
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            break
    return best


TRAINER_RUNS = {  # name -> overrides of configs/demo.yaml
    "stage1": ["stages=[data]"],
    "stage2": ["stages=[model]"],
    "simcse": ["objective=simcse"],
    "stage1 packed": ["stages=[data]", "training.tokens_per_step={tokens}"],
    "stage1 packed compiled": ["stages=[data]", "training.tokens_per_step={tokens}", "training.compile=true"],
    "stage1 packed ckpt": [
        "stages=[data]",
        "training.tokens_per_step={tokens}",
        "training.gradient_checkpointing=true",
    ],
}
LOG_EVERY = 5  # the host reads the loss every 5 steps: steady-state time between two log lines


def trainer_rows(shape: str, device, steps: int, batch_size: int, peak: float, folder) -> dict:
    """``train()`` itself on a random model of ``shape`` (the SmolLM2 tokenizer, so the bundled corpus works)."""
    import json
    import statistics
    from pathlib import Path

    from transformers import AutoTokenizer

    from text2token.backbone import resolve_model_path
    from text2token.training import load_config, train

    tok = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    spec = {**SHAPES[shape], "vocab_size": len(tok)}
    model_dir = Path(folder) / shape
    if not model_dir.exists():
        from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

        family = spec.pop("family")
        cfg_cls, model_cls = (Qwen2Config, Qwen2ForCausalLM) if family == "qwen2" else (LlamaConfig, LlamaForCausalLM)
        torch.manual_seed(0)
        model = model_cls(
            cfg_cls(**spec, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        ).to(torch.bfloat16)
        n_nonembed = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)
        model.save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
        (model_dir / "non_embedding_params.json").write_text(json.dumps(n_nonembed))
        del model
    n_nonembed = json.loads((model_dir / "non_embedding_params.json").read_text())
    root = Path(__file__).resolve().parent.parent
    rows = {"non_embedding_params": n_nonembed, "batch_size": batch_size}
    for name, extra in TRAINER_RUNS.items():
        extra = [e.format(tokens=batch_size * 40) for e in extra]
        overrides = [
            f"model.name={model_dir}",
            f"output_dir={Path(folder) / ('run-' + shape + '-' + name.replace(' ', '-'))}",
            f"stage1.steps={steps}",
            f"stage2.steps={steps}",
            f"simcse.steps={steps}",
            "training.save_every=0",
            f"training.batch_size={batch_size}",
            "training.max_length=128",
            f"training.log_every={LOG_EVERY}",
        ]
        overrides += extra
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            out_dir = train(load_config(root / "configs" / "demo.yaml", overrides), show_progress_bar=False).parent
        except torch.OutOfMemoryError as exc:
            rows[name] = {"error": f"out of memory: {str(exc).splitlines()[0]}"}
            print(f"  trainer {shape:13s} {name:22s}: out of memory", flush=True)
            torch.cuda.empty_cache()
            continue
        logs = [
            json.loads(line)
            for log in sorted(out_dir.glob("*/train_log.jsonl"))
            for line in log.read_text().splitlines()
        ]
        # steady state: from the first logged step after warm-up (compile, allocator) to the last one
        first, last = logs[1 if len(logs) > 2 else 0], logs[-1]
        if last["step"] > first["step"]:
            step_s = (last["elapsed_s"] - first["elapsed_s"]) / (last["step"] - first["step"])
        else:  # one log line (a smoke run): its own step time
            step_s = last["seconds"]
        tok_s = statistics.mean(r["tokens"] for r in logs) / step_s
        summary = json.loads((out_dir / "train_summary.json").read_text())
        rows[name] = {
            "median_step_s": round(step_s, 4),
            "real_tokens_per_s": round(tok_s),
            "useful_fraction_of_matmul": round(4 * n_nonembed * tok_s / 1e12 / peak, 4),
            "peak_memory_mb": summary["peak_memory_mb"],
            "mixed_precision": summary["mixed_precision"],
        }
        print(
            f"  trainer {shape:13s} {name:22s}: {step_s:.3f} s/step, {tok_s:,.0f} real tokens/s, "
            f"{rows[name]['useful_fraction_of_matmul']:.1%} of matmul, peak {summary['peak_memory_mb']:.0f} MB",
            flush=True,
        )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="CPU smoke run with a tiny shape")
    p.add_argument("--shapes", default="qwen2-0.5b,llama-1b")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batches", default="64,128,256,512", help="batch sizes to try (the largest that fits is used)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd trunks")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--trainer", action="store_true", help="measure text2token's train() itself (see the module doc)")
    p.add_argument("--trainer-batch", type=int, default=32, help="texts per step for --trainer (the paper: 32)")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shapes = ["tiny"] if args.tiny else args.shapes.split(",")
    steps = 2 if args.tiny else args.steps
    card = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    peak = matmul_tflops(device, dtype, n=512 if args.tiny else 8192, iters=5 if args.tiny else 50)
    print(f"{card}: measured {'bf16' if dtype == torch.bfloat16 else 'fp32'} matmul {peak:.1f} TFLOP/s")
    report = {"device": card, "matmul_tflops": round(peak, 2), "seq": args.seq, "shapes": {}}
    if args.trainer:
        import tempfile

        shapes = ["tiny"] if args.tiny else args.shapes.split(",")
        report["trainer"] = {}
        with tempfile.TemporaryDirectory() as folder:
            for shape in shapes:
                report["trainer"][shape] = trainer_rows(
                    shape, device, 3 if args.tiny else args.steps, 8 if args.tiny else args.trainer_batch, peak, folder
                )
        if args.json:
            from text2token.textio import write_json_atomic

            write_json_atomic(args.json, report)
            print(f"written: {args.json}")
        return 0
    for shape in shapes:
        model, n_nonembed = build(shape, device, dtype)
        cands = [8] if args.tiny else [int(x) for x in args.batches.split(",")]
        row = {"non_embedding_params": n_nonembed}
        for system in ("text2token", "simcse"):
            bsz = largest_batch(model, system, args.seq, device, cands) if device.type == "cuda" else cands[0]
            s_step, tok_s = train_steps(model, system, bsz, args.seq, steps, device)
            tflops = 4 * n_nonembed * tok_s / 1e12
            row[system] = {
                "batch": bsz,
                "seconds_per_step": round(s_step, 4),
                "real_tokens_per_s": round(tok_s),
                "useful_tflops": round(tflops, 2),
                "fraction_of_matmul": round(tflops / peak, 3),
            }
            if args.compile and device.type == "cuda":
                s_c, tok_c = train_steps(model, system, bsz, args.seq, steps, device, use_compile=True)
                row[system]["compiled"] = {
                    "seconds_per_step": round(s_c, 4),
                    "real_tokens_per_s": round(tok_c),
                    "fraction_of_matmul": round(4 * n_nonembed * tok_c / 1e12 / peak, 3),
                }
            print(
                f"  {shape:11s} {system:10s} batch {bsz:4d}: {s_step:.3f} s/step, {tok_s:,.0f} real tokens/s, "
                f"{tflops:.1f} TFLOP/s useful = {tflops / peak:.1%} of matmul"
            )
        same = min(row["text2token"]["batch"], row["simcse"]["batch"])
        if same != row["simcse"]["batch"] or same != row["text2token"]["batch"]:
            t_same, _ = train_steps(model, "text2token", same, args.seq, steps, device)
            s_same, _ = train_steps(model, "simcse", same, args.seq, steps, device)
        else:
            t_same, s_same = row["text2token"]["seconds_per_step"], row["simcse"]["seconds_per_step"]
        row["step_ratio_vs_simcse_same_batch"] = round(t_same / s_same, 3)
        row["encode_texts_per_s"] = round(
            encode_throughput(model, cands[-1] if device.type == "cuda" else 8, args.seq, device)
        )
        print(
            f"  {shape:11s} Text2Token/SimCSE step time at batch {same}: {row['step_ratio_vs_simcse_same_batch']:.2f}; "
            f"encode {row['encode_texts_per_s']:,} texts/s"
        )
        report["shapes"][shape] = row
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.json:
        from text2token.textio import write_json_atomic

        write_json_atomic(args.json, report)
        print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The isotropy correction on the dev suite: the geometry of a model's vectors before and after, and its scores under
every correction setting — D ∈ {0, 1, 2, 3, 5, 8} directions, fit sample ∈ {500, 2,000, 10,000} texts, fit corpus
Brown (the training corpus of every recipe here) vs Wikipedia — next to the raw vectors.

Each text is encoded once: the dev suite's texts go through one raw-vector cache (``MTEBEncoder(reuse_raw=True)``)
and every correction is applied to those vectors, so a model's whole sweep costs one suite encode plus the fit
samples. Resumable: raw vectors are kept under OUT/runs/ and scored settings in OUT/NAME.json are not rescored.

    python benchmarks/isotropy.py --model default --name untrained-smollm2 --out benchmarks/results/isotropy
    python benchmarks/isotropy.py --model runs/combined/model --name combined_l1-seed0 --out ...
    python benchmarks/isotropy.py --adapters benchmarks/results/isotropy/adapters/combined_l1-seed0 --name ...
    python benchmarks/isotropy.py --smoke      # tiny sizes on the bundled default: checks the script runs

``--adapters DIR``: a study run kept as its LoRA adapters (DIR/config.yaml + one adapter_final.safetensors per
stage folder, as ``text2token train`` writes them): the model is rebuilt from its backbone with each stage's adapter
merged in order — how a later session re-scores a study without its run folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

GEOMETRY_TEXTS = 1000  # random corpus texts the geometry figures are computed on


def load(args):
    import torch

    from text2token import Text2TokenModel

    if args.adapters:
        from text2token.training.checkpoint_model import load_run_adapters

        return load_run_adapters(args.adapters).float()
    model = Text2TokenModel.from_pretrained(args.model, device="cpu", dtype=torch.float32)
    model.set_correction(None)  # every setting is fitted here, on the raw vectors
    return model


def raw_sample(model, corpus: str | None, n: int, cache: Path, batch_size: int) -> np.ndarray:
    """Raw vectors of the first ``n`` texts of ``corpus`` shuffled with seed 0 (a smaller sample is a prefix: the
    same seeded permutation), cached in ``cache``."""
    from text2token.training.corpus import corpus_path, read_corpus

    if cache.is_file():
        kept = np.load(cache)
        if len(kept) >= n:
            return kept[:n]
    texts, _ = read_corpus(corpus_path(corpus), "text", 0, n)
    raw = model.encode(texts, batch_size=batch_size, postprocess=False, show_progress_bar=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache.with_suffix(".tmp.npy"), raw)
    cache.with_suffix(".tmp.npy").replace(cache)
    return raw


def geometry_table(samples: dict, directions: list[int]) -> dict:
    """:func:`text2token.analysis.geometry` of the first 1,000 vectors of the Brown sample, raw and after each
    correction fitted on the sample's remaining vectors (out of sample)."""
    import torch

    from text2token.analysis import geometry
    from text2token.isotropy import IsotropyCorrection

    brown = samples["bundled:brown"]
    n = min(GEOMETRY_TEXTS, len(brown) // 2)
    probe, fit = torch.from_numpy(brown[:n]), brown[n:]
    table = {"raw": geometry(probe.numpy())}
    for d in directions:
        c = IsotropyCorrection.fit(fit, d)
        table[f"mean + top {d} removed"] = geometry(c.apply(probe).numpy())
    return table


def settings(directions, texts, corpora):
    """The settings scored: none; every D at (Brown, 2,000); every sample size and Wikipedia at D = 1 and 2."""
    base_texts = 2000 if 2000 in texts else texts[0]
    out = [None]
    out += [("bundled:brown", base_texts, d) for d in directions]
    for d in [d for d in (1, 2) if d in directions]:
        out += [("bundled:brown", t, d) for t in texts if t != base_texts]
        out += [(c, base_texts, d) for c in corpora if c != "bundled:brown"]
    return list(dict.fromkeys(out))


def key(setting) -> str:
    return "raw" if setting is None else f"{setting[0].split(':')[-1]}-{setting[1]}-D{setting[2]}"


def tables(out: Path) -> str:
    """Markdown of every record in ``out``: per model, the mean and categories of each setting; per task for raw,
    the best setting and the shipped default; the geometry."""
    from text2token.analysis import format_geometry
    from text2token.modes import ISOTROPY_DIRECTIONS, ISOTROPY_FIT_TEXTS

    default = f"brown-{ISOTROPY_FIT_TEXTS}-D{ISOTROPY_DIRECTIONS}"
    parts = []
    for path in sorted(out.glob("*.json")):
        rec = json.loads(path.read_text())
        if "name" not in rec:  # overhead.json
            continue
        scores = rec.get("scores", {})
        parts += [f"### {rec['name']}", "", f"`{rec['model']}`, suite `{rec.get('suite')}`", ""]
        if scores:
            cats = list(next(iter(scores.values()))["categories"])
            raw = scores.get("raw", {}).get("mean")
            parts += [
                "| setting (corpus-texts-D) | mean | vs raw | " + " | ".join(cats) + " |",
                "|---|---|---|" + "---|" * len(cats),
            ]
            for k, v in scores.items():
                delta = f"{v['mean'] - raw:+.2f}" if raw is not None and k != "raw" else ""
                name = f"**{k}** (default)" if k == default else k
                parts.append(
                    f"| {name} | {v['mean']:.2f} | {delta} | "
                    + " | ".join(f"{v['categories'][c]:.2f}" for c in cats)
                    + " |"
                )
            best = max(scores, key=lambda k: scores[k]["mean"])
            shown = [k for k in dict.fromkeys(["raw", default, best]) if k in scores]
            tasks = list(scores[shown[0]]["tasks"])
            parts += ["", "| task | " + " | ".join(shown) + " |", "|---|" + "---|" * len(shown)]
            parts += [f"| {t} | " + " | ".join(f"{scores[k]['tasks'][t]:.2f}" for k in shown) + " |" for t in tasks]
            parts.append("")
        if rec.get("geometry"):
            parts += ["Geometry of 1,000 Brown texts (corrections fitted on 1,000 others):", ""]
            parts += [format_geometry(rec["geometry"]), ""]
    return "\n".join(parts)


def overhead(model_name: str, texts: int, rounds: int, batch_size: int) -> dict:
    """Encode time with and without a correction (D = 8, the largest setting), alternating rounds in one process:
    what the correction costs on top of the forward pass."""
    import torch

    from text2token import Text2TokenModel
    from text2token.training.corpus import corpus_path, read_corpus

    model = Text2TokenModel.from_pretrained(model_name, device="cpu", dtype=torch.float32)
    sample, _ = read_corpus(corpus_path(None), "text", 1, texts)
    correction = model.fit_correction(read_corpus(corpus_path(None), "text", 2, 200)[0], 8)
    timings = {"raw": [], "corrected": []}
    model.encode(sample[:batch_size], batch_size=batch_size)  # warm-up
    for _ in range(rounds):
        for name, c in (("raw", None), ("corrected", correction)):
            model.set_correction(c)
            t0 = time.perf_counter()
            model.encode(sample, batch_size=batch_size, show_progress_bar=False)
            timings[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in timings.items()}
    return {
        "model": model_name,
        "texts": len(sample),
        "rounds": rounds,
        "seconds_best": {k: round(v, 3) for k, v in best.items()},
        "corrected_over_raw": round(best["corrected"] / best["raw"], 4),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="a model folder or backbone (its own correction is ignored)")
    p.add_argument("--adapters", help="a study run kept as adapters (see above) instead of --model")
    p.add_argument("--name", default=None, help="the row name (default: the model)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "isotropy"))
    p.add_argument("--suite", default="dev")
    p.add_argument("--directions", default="0,1,2,3,5,8")
    p.add_argument("--texts", default="500,2000,10000")
    p.add_argument("--corpora", default="bundled:brown,bundled:wiki")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--geometry-only", action="store_true", help="the geometry figures only, no suite scores")
    p.add_argument(
        "--overhead", action="store_true", help="time encode with and without a correction (alone on the machine)"
    )
    p.add_argument("--tables", action="store_true", help="print the Markdown tables of every record in --out")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (suite 'quick' cut to one task): the script runs")
    args = p.parse_args(argv)

    from text2token.analysis import format_geometry
    from text2token.evaluation import evaluate_suite, load_task
    from text2token.evaluation.mteb_runner import MTEBEncoder
    from text2token.evaluation.suite import evaluate_task
    from text2token.isotropy import IsotropyCorrection

    if args.overhead:
        texts, rounds = (64, 1) if args.smoke else (512, 3)
        result = overhead(args.model, texts, rounds, args.batch_size)
        print(json.dumps(result, indent=2))
        if not args.smoke:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "overhead.json").write_text(json.dumps(result, indent=2) + "\n")
        return 0
    if args.tables:
        print(tables(Path(args.out)))
        return 0
    directions = [int(x) for x in args.directions.split(",")]
    texts = [int(x) for x in args.texts.split(",")]
    corpora = args.corpora.split(",")
    if args.smoke:
        directions, texts, corpora = [0, 1], [240], ["bundled:brown"]
    name = args.name or Path(args.adapters or args.model).name
    out = Path(args.out) if not args.smoke else Path(tempfile.mkdtemp(prefix="isotropy-smoke-"))
    out.mkdir(parents=True, exist_ok=True)
    record_file = out / f"{name}.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {"name": name, "scores": {}}
    record.update(model=args.adapters or args.model, suite=args.suite)

    def save():
        tmp = record_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(record_file)

    t0 = time.perf_counter()
    model = load(args)
    runs = out / "runs" / name
    samples = {
        c: raw_sample(model, c, max(texts), runs / f"fit-{c.split(':')[-1]}.npy", args.batch_size) for c in corpora
    }
    print(f"fit samples encoded ({time.perf_counter() - t0:.0f} s)", flush=True)

    # geometry of 1,000 random Brown texts, raw and corrected with each D fitted on *other* texts (the rest of the
    # Brown sample: out of sample, as a user's texts are), and on the Wikipedia sample if there is one
    record["geometry"] = geometry_table(samples, directions)
    save()
    print(format_geometry(record["geometry"]), flush=True)
    if args.geometry_only:
        return 0

    encoder = MTEBEncoder(model, batch_size=args.batch_size, reuse_raw=True)
    for setting in settings(directions, texts, corpora):
        k = key(setting)
        if k in record["scores"] and not args.smoke:
            continue
        if setting is None:
            model.set_correction(None)
        else:
            corpus, n, d = setting
            model.set_correction(IsotropyCorrection.fit(samples[corpus][:n], d, {"corpus": corpus, "seed": 0}))
        t1 = time.perf_counter()
        if args.smoke:  # one small task: the scoring path runs
            score = evaluate_task(encoder, load_task("WordSim353"), batch_size=args.batch_size)
            print(f"smoke {k}: WordSim353 {score:.2f}")
            continue
        result = evaluate_suite(encoder, args.suite, batch_size=args.batch_size, progress=None)
        record["scores"][k] = {
            "mean": result["mean"],
            "categories": result["categories"],
            "tasks": {t: v["main_score"] for t, v in result["tasks"].items()},
            "seconds": round(time.perf_counter() - t1, 1),
        }
        save()
        print(f"{name} {k}: mean {result['mean']:.2f} ({time.perf_counter() - t1:.0f} s)", flush=True)
    print(f"done in {time.perf_counter() - t0:.0f} s; {record_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

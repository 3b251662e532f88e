"""The paper's analysis as a command: how training moved the vocabulary view and the representation.

For a set of texts, with the trained model and its untrained base (same pooling and template):

- **own-token hit rate**: the share of each text's top-k LM-head tokens that are among the text's own
  content tokens (the stage-1 target set); **beyond-text share** = 1 − that (tokens the text implies
  but does not contain);
- **movement along the base's top singular directions**: the base embeddings' top singular vectors
  (centred, SVD); for each direction, the share of total variance that the base and the trained
  embeddings put on it, and the mean cosine between each text's base and trained embedding;
- **geometry** (:func:`geometry`): how much of the space the vectors use — mean pairwise cosine, the norm of the
  mean vector over the mean norm, the variance share of the top 1 / 5 / 20 principal directions — for the base and
  the trained model's raw vectors, and for the trained model's vectors as it encodes them (with its isotropy
  correction, :mod:`text2token.isotropy`, if it has one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .targets import DataDrivenTargetBuilder


def geometry(embeddings) -> dict:
    """Anisotropy figures of a set of embeddings (N×H): ``mean_pairwise_cosine`` (over distinct pairs; ~0 for
    vectors spread over the space, near 1 when they share one direction), ``mean_norm_ratio`` = ‖mean vector‖ / mean
    ‖vector‖, and ``variance_top{1,5,20}`` = the share of the total variance along the top principal directions."""
    x = np.asarray(embeddings, dtype=np.float64)
    n = len(x)
    if n < 2:
        raise ValueError("geometry needs at least two embeddings")
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    s = unit.sum(0)
    pairwise = (s @ s - n) / (n * (n - 1))  # Σ_{i≠j} cos / pairs, without the N×N matrix
    ratio = np.linalg.norm(x.mean(0)) / np.linalg.norm(x, axis=1).mean()
    centred = x - x.mean(0)
    var = np.linalg.svd(centred, compute_uv=False) ** 2
    total = var.sum() or 1.0
    return {
        "texts": n,
        "mean_pairwise_cosine": round(float(pairwise), 4),
        "mean_norm_ratio": round(float(ratio), 4),
        **{f"variance_top{k}": round(float(var[:k].sum() / total), 4) for k in (1, 5, 20)},
    }


def _top_tokens(model, texts: list[str], k: int) -> list[list[int]]:
    out: list = [None] * len(texts)
    for idx, logits in model.iter_vocab_logits(texts, 32):
        for row, top in zip(idx, logits.topk(k, dim=-1).indices.cpu().tolist()):
            out[row] = top
    return out


def _vocab_view(model, texts, k, builder) -> dict:
    tops = _top_tokens(model, texts, k)
    own = [set(builder.token_ids(t)) for t in texts]
    rates = [len(set(top) & o) / k for top, o in zip(tops, own)]
    return {
        "own_token_hit_rate": round(float(np.mean(rates)), 4),
        "beyond_text_share": round(1 - float(np.mean(rates)), 4),
    }


def analyze(
    trained, base, texts: list[str], top_k: int = 10, directions: int = 10, png: str | Path | None = None
) -> dict:
    trained.check_top_k(top_k)
    builder = DataDrivenTargetBuilder(trained.tokenizer)
    with torch.inference_mode():
        view = {
            "base": _vocab_view(base, texts, top_k, builder),
            "trained": _vocab_view(trained, texts, top_k, builder),
        }
        e_base = base.encode(texts, postprocess=False)
        e_trained = trained.encode(texts, postprocess=False)
        e_encoded = trained.postprocess(torch.from_numpy(e_trained)).numpy()
    centred_b = e_base - e_base.mean(0)
    centred_t = e_trained - e_trained.mean(0)
    _, _, vt = np.linalg.svd(centred_b, full_matrices=False)
    r = min(directions, vt.shape[0])
    dirs = vt[:r]  # r × H, orthonormal
    share_b = (centred_b @ dirs.T).var(0) / centred_b.var(0).sum()
    share_t = (centred_t @ dirs.T).var(0) / centred_t.var(0).sum()
    cos = (e_base * e_trained).sum(1) / (np.linalg.norm(e_base, axis=1) * np.linalg.norm(e_trained, axis=1))
    result = {
        "texts": len(texts),
        "top_k": top_k,
        "vocabulary": view,
        "directions": [
            {
                "direction": i + 1,
                "base_variance_share": round(float(share_b[i]), 4),
                "trained_variance_share": round(float(share_t[i]), 4),
            }
            for i in range(r)
        ],
        "top_directions_variance_share": {
            "base": round(float(share_b.sum()), 4),
            "trained": round(float(share_t.sum()), 4),
        },
        "mean_cosine_base_vs_trained": round(float(cos.mean()), 4),
        "geometry": {
            "base": geometry(e_base),
            "trained (raw)": geometry(e_trained),
            **({"trained (isotropy-corrected)": geometry(e_encoded)} if trained.correction is not None else {}),
        },
    }
    if png is not None:
        _plot(result, png)
    return result


def _plot(result: dict, png) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    v = result["vocabulary"]
    names = ["own-token hit rate", "beyond-text share"]
    x = np.arange(2)
    axes[0].bar(x - 0.2, [v["base"]["own_token_hit_rate"], v["base"]["beyond_text_share"]], 0.4, label="base")
    axes[0].bar(x + 0.2, [v["trained"]["own_token_hit_rate"], v["trained"]["beyond_text_share"]], 0.4, label="trained")
    axes[0].set_xticks(x, names)
    axes[0].set(title=f"top-{result['top_k']} LM-head tokens", ylim=(0, 1))
    d = result["directions"]
    idx = np.arange(len(d))
    axes[1].bar(idx - 0.2, [r["base_variance_share"] for r in d], 0.4, label="base")
    axes[1].bar(idx + 0.2, [r["trained_variance_share"] for r in d], 0.4, label="trained")
    axes[1].set_xticks(idx, [str(r["direction"]) for r in d])
    axes[1].set(title="variance share along the base's top singular directions", xlabel="direction")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def format_analysis(result: dict, model_name: str, base_name: str) -> str:
    v = result["vocabulary"]
    lines = [
        f"{result['texts']} texts; {model_name} vs base {base_name}",
        "",
        f"| top-{result['top_k']} LM-head tokens | base | trained |",
        "|---|---|---|",
        f"| share among the text's own content tokens | {v['base']['own_token_hit_rate']:.3f} | "
        f"{v['trained']['own_token_hit_rate']:.3f} |",
        f"| share from beyond the text | {v['base']['beyond_text_share']:.3f} | {v['trained']['beyond_text_share']:.3f} |",
        "",
        "| base singular direction | base variance share | trained variance share |",
        "|---|---|---|",
    ]
    lines += [
        f"| {r['direction']} | {r['base_variance_share']:.3f} | {r['trained_variance_share']:.3f} |"
        for r in result["directions"]
    ]
    t = result["top_directions_variance_share"]
    lines += [
        f"| **top {len(result['directions'])} together** | **{t['base']:.3f}** | **{t['trained']:.3f}** |",
        "",
        f"mean cosine between a text's base and trained embedding: {result['mean_cosine_base_vs_trained']:.3f}",
    ]
    if "geometry" in result:
        lines += ["", format_geometry(result["geometry"])]
    return "\n".join(lines)


def format_geometry(rows: dict[str, dict]) -> str:
    """A Markdown table of :func:`geometry` results, one row per named set of vectors."""
    lines = [
        "| vectors | mean pairwise cosine | ‖mean‖ / mean ‖x‖ | variance top 1 | top 5 | top 20 |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {g['mean_pairwise_cosine']:.3f} | {g['mean_norm_ratio']:.3f} | {g['variance_top1']:.3f} | "
        f"{g['variance_top5']:.3f} | {g['variance_top20']:.3f} |"
        for name, g in rows.items()
    ]
    return "\n".join(lines)

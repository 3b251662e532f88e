"""The paper's analysis as a command: how training moved the vocabulary view and the representation.

For a set of texts, with the trained model and its untrained base (same pooling and template):

- **own-token hit rate**: the share of each text's top-k LM-head tokens that are among the text's own
  content tokens (the stage-1 target set); **beyond-text share** = 1 − that (tokens the text implies
  but does not contain);
- **movement along the base's top singular directions**: the base embeddings' top singular vectors
  (centred, SVD); for each direction, the share of total variance that the base and the trained
  embeddings put on it, and the mean cosine between each text's base and trained embedding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .targets import DataDrivenTargetBuilder


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
        e_base = base.encode(texts)
        e_trained = trained.encode(texts)
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
    return "\n".join(lines)

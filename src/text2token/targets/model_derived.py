"""Stage-2 targets derived from a frozen model (by default the stage-1 model, LoRA merged).

For every text x: ``l(x) = lm_head(pool(h(x)))`` and ``p(x) = softmax(l(x))``. Over the stage-2
training texts, the corpus prior is ``π = softmax(mean_x l(x))``. The ratio
``r_v = p_v / (p_v + π_v + 1e-8)`` is high where the text makes a token far more likely than
texts in general do; the target is ``q = softmax(r / τ)``.
"""

from __future__ import annotations

import torch

from .store import SparseTargets

RATIO_EPS = 1e-8


def logit_sum(
    model, texts: list[str], batch_size: int = 32, show_progress_bar: bool = False
) -> tuple[torch.Tensor, int]:
    """Sum of ``lm_head(pool(h(x)))`` over ``texts`` (fp64, streamed in batches) and the count."""
    total = None
    for _, logits in model.iter_vocab_logits(
        texts, batch_size, desc="corpus prior", show_progress_bar=show_progress_bar
    ):
        batch_sum = logits.double().sum(dim=0)
        total = batch_sum if total is None else total + batch_sum
    return total, len(texts)


def corpus_prior(
    model, texts: list[str], batch_size: int = 32, accelerator=None, show_progress_bar: bool = False
) -> torch.Tensor:
    """``π = softmax(mean_x l(x))`` (fp32, V). With ``accelerator``, each process passes its own
    shard of ``texts`` and the sums and counts are all-reduced, so every process gets the same π."""
    total, count = logit_sum(model, texts, batch_size, show_progress_bar)
    if total is None:
        total = torch.zeros(model.lm_head.weight.shape[0], dtype=torch.float64, device=model.device)
    if accelerator is not None and accelerator.num_processes > 1:
        packed = torch.cat([total, torch.tensor([float(count)], dtype=torch.float64, device=total.device)])
        packed = accelerator.reduce(packed, reduction="sum")
        total, count = packed[:-1], int(packed[-1].item())
    return prior_from_logit_sum(total, count)


def prior_from_logit_sum(total: torch.Tensor, count: int) -> torch.Tensor:
    """``π = softmax(mean logits)`` (fp32, V) from the summed LM-head logits of ``count`` texts."""
    return torch.softmax((total / max(count, 1)).float(), dim=-1)


def prior_ratio(p, prior):
    """``r = p / (p + π + 1e-8)``: how much more this text predicts each token than texts in general do. ``p`` and
    ``prior`` are torch tensors or numpy arrays (the sparse index weights its top tokens with the same formula)."""
    return p / (p + prior + RATIO_EPS)


def ratio_scores(logits: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """:func:`prior_ratio` of ``p = softmax(logits)`` (B×V, fp32)."""
    p = torch.softmax(logits.float(), dim=-1)
    return prior_ratio(p, prior.to(p.device).float())


def model_derived_targets(logits: torch.Tensor, prior: torch.Tensor, tau: float) -> torch.Tensor:
    """Dense targets ``q = softmax(r / τ)`` (B×V), no gradient."""
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    with torch.no_grad():
        return torch.softmax(ratio_scores(logits.detach(), prior) / tau, dim=-1)


def truncate_top_k(q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the top-k entries of each row of ``q``: (ids B×k, weights renormalised to 1, mass kept B)."""
    top = q.topk(min(k, q.shape[-1]), dim=-1)
    mass = top.values.sum(dim=-1)
    return top.indices, top.values / mass.unsqueeze(-1), mass


class FrozenModelTargets:
    """Dense stage-2 targets computed on the fly, exactly: the same network with its adapter disabled
    (the frozen stage-1 model) in eval mode, ``q = softmax(r / τ)`` against ``prior``."""

    def __init__(self, peft_model, prior: torch.Tensor, tau: float, autocast=None):
        from contextlib import nullcontext

        self.peft_model = peft_model
        self.prior = prior
        self.tau = tau
        self.autocast = autocast or nullcontext

    def __call__(self, batch, model) -> torch.Tensor:
        with torch.no_grad(), self.peft_model.disable_adapter(), model._eval_mode(), self.autocast():
            logits = model.vocab_logits(
                model(batch.input_ids, batch.attention_mask, batch.position_ids, batch.segment_ids)
            )
            return model_derived_targets(logits, self.prior, self.tau)


def precompute_top_k_targets(
    model,
    texts: list[str],
    prior: torch.Tensor,
    tau: float,
    top_k: int,
    batch_size: int,
    fingerprint: dict,
    show_progress_bar: bool = False,
):
    """Top-k sparse model-derived targets for every text (rows in input order) and a report of the mass kept."""
    import numpy as np

    model.eval()
    ids_list: list = [None] * len(texts)
    w_list: list = [None] * len(texts)
    masses = []
    for idx, logits in model.iter_vocab_logits(
        texts, batch_size, desc="stage-2 targets", show_progress_bar=show_progress_bar
    ):
        ids, w, mass = truncate_top_k(model_derived_targets(logits, prior, tau), top_k)
        for row, i, v in zip(idx, ids.cpu().numpy(), w.cpu().numpy()):
            ids_list[row], w_list[row] = i, v
        masses.append(mass.cpu())
    targets = SparseTargets.from_lists(ids_list, w_list, np.arange(len(texts)), fingerprint)
    mass = torch.cat(masses)
    return targets, {
        "texts": len(texts),
        "top_k": top_k,
        "mass_kept_mean": round(mass.mean().item(), 4),
        "mass_kept_min": round(mass.min().item(), 4),
    }

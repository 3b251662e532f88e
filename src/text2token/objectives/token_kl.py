"""The Text2Token loss: KL(q ‖ p) between a target q and p = softmax(lm_head(pooled)).

KL(q‖p) = Σ_v q_v (log q_v − log p_v); with a sparse q only its support matters, so the
dense target is never built. Averaged over the batch ("batchmean"). Targets carry no
gradient.
"""

from __future__ import annotations

import torch

from .base import Objective, ObjectiveOutput


def sparse_kl_loss(logits: torch.Tensor, target_ids: torch.Tensor, target_weights: torch.Tensor) -> torch.Tensor:
    """``logits`` B×V (fp32), ``target_ids``/``target_weights`` B×K (weight 0 = padding)."""
    logits = logits.float()
    log_p = torch.log_softmax(logits, dim=-1).gather(1, target_ids)
    q = target_weights.detach().float()
    log_q = torch.where(q > 0, torch.log(q.clamp_min(1e-30)), torch.zeros_like(q))
    per_text = (q * (log_q - log_p)).sum(dim=1)
    return per_text.mean()


def dense_kl_loss(logits: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(q‖p) batch-mean for a dense target ``q`` (B×V); ``0·log 0`` counts as 0."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    q = q.detach().float()
    log_q = torch.where(q > 0, torch.log(q.clamp_min(1e-30)), torch.zeros_like(q))
    return (q * (log_q - log_p)).sum(dim=1).mean()


def topk_hit_rate(logits: torch.Tensor, target_ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over texts of |top-n predicted tokens ∩ target tokens| / n, where n is the text's number of
    target tokens (``valid`` marks real entries of the padded ``target_ids``). A 0-d tensor: no host sync."""
    n = valid.sum(dim=1)
    k = min(target_ids.shape[1], logits.shape[-1])  # the padded width bounds every n: no need to read n
    top = logits.topk(k, dim=-1).indices  # B×k, best first
    in_top = (top.unsqueeze(2) == target_ids.unsqueeze(1)).any(dim=2)  # B×k: predicted token is a target
    ranks = torch.arange(k, device=logits.device).unsqueeze(0)
    hits = (in_top & (ranks < n.unsqueeze(1))).sum(dim=1)
    return (hits / n.clamp_min(1)).mean()


class TokenKL(Objective):
    """KL(q‖p) to the batch's sparse targets (data-driven, or precomputed model-derived top-k), or — with
    ``frozen_targets`` — to dense model-derived targets computed on the fly from the frozen network."""

    name = "token_kl"

    def __init__(self, frozen_targets=None):
        self.frozen_targets = frozen_targets

    def attach_targets(self, batch, model) -> None:
        if self.frozen_targets is not None:
            batch.target_probs = self.frozen_targets(batch, model)

    def __call__(self, views, batch, model) -> ObjectiveOutput:
        logits = model.vocab_logits(views[0])  # B×V only: the LM head on pooled vectors
        if batch.target_probs is None:
            ids, weights = batch.target_ids, batch.target_weights
            loss = sparse_kl_loss(logits, ids, weights)
            hit = topk_hit_rate(logits.detach(), ids, weights > 0)
            return ObjectiveOutput({self.name: loss}, {"hit_rate": hit})
        q = batch.target_probs
        top_q = q.topk(16, dim=-1).indices
        metrics = {
            "q_mass_top64": q.topk(64, dim=-1).values.sum(dim=-1).mean(),
            "hit_rate": topk_hit_rate(logits.detach(), top_q, torch.ones_like(top_q, dtype=torch.bool)),
        }
        return ObjectiveOutput({self.name: dense_kl_loss(logits, q)}, metrics)

    def describe(self) -> str:
        return self.name if self.frozen_targets is None else f"{self.name} (on-the-fly targets)"

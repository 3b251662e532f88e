"""The Text2Token loss: KL(q ‖ p) between a sparse target q and p = softmax(lm_head(pooled)).

KL(q‖p) = Σ_v q_v (log q_v − log p_v); with q sparse only its support matters, so the
dense target is never built. Averaged over the batch ("batchmean"). Targets carry no
gradient.
"""

from __future__ import annotations

import torch


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

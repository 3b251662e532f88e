"""Pooling of the last hidden layer into one vector per text, correct for left and right padding.

- ``mean``: average over non-padding positions;
- ``last``: the last non-padding position (used with the PromptEOL template);
- ``weighted_mean``: position-weighted mean as in SGPT (weight = 1-based position among
  the text's own tokens, so later tokens, which have seen more context, count more).
"""

from __future__ import annotations

import torch

from .modes import POOLING_MODES  # noqa: E402,F401  (defined torch-free)
PROMPTEOL_TEMPLATE = 'This sentence : "{text}" means in one word:"'


def default_template(pooling: str) -> str | None:
    """PromptEOL for last-token pooling; no prompt for the mean poolings."""
    return PROMPTEOL_TEMPLATE if pooling == "last" else None


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool ``hidden`` (B×L×H) under ``attention_mask`` (B×L, 1 = token) into B×H."""
    mask = attention_mask.to(hidden.dtype)
    if mode == "mean":
        summed = (hidden * mask.unsqueeze(-1)).sum(dim=1)
        return summed / mask.sum(dim=1, keepdim=True).clamp(min=1)
    if mode == "weighted_mean":
        weights = torch.cumsum(mask, dim=1) * mask  # 1..n over real tokens, 0 on padding
        summed = (hidden * weights.unsqueeze(-1)).sum(dim=1)
        return summed / weights.sum(dim=1, keepdim=True).clamp(min=1)
    if mode == "last":
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(attention_mask)
        last = torch.where(attention_mask.bool(), positions, torch.full_like(positions, -1)).max(dim=1).values
        last = last.clamp(min=0)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"pooling must be one of {POOLING_MODES}, got {mode!r}")

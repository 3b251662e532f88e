"""Pooling of the last hidden layer into one vector per text — of padded rows (one text per row, left or right
padding: :func:`pool`) and of packed rows (several texts per row: :func:`pool_segments`), with the same definitions:

- ``mean``: average over non-padding positions;
- ``last``: the last non-padding position (used with the PromptEOL template);
- ``weighted_mean``: position-weighted mean as in SGPT (weight = 1-based position among
  the text's own tokens, so later tokens, which have seen more context, count more).
"""

from __future__ import annotations

import torch

from .modes import Pooling

PROMPTEOL_TEMPLATE = 'This sentence : "{text}" means in one word:"'


def default_template(pooling: str) -> str | None:
    """PromptEOL for last-token pooling; no prompt for the mean poolings."""
    return PROMPTEOL_TEMPLATE if pooling == Pooling.LAST else None


def _check_mode(mode: str) -> None:
    Pooling.require(mode, "pooling")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool ``hidden`` (B×L×H) under ``attention_mask`` (B×L, 1 = token) into B×H."""
    _check_mode(mode)
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
    raise AssertionError(mode)  # every Pooling value is handled above


def pool_segments(
    hidden: torch.Tensor,
    segment_ids: torch.Tensor,
    position_ids: torch.Tensor,
    mode: str,
    num_segments: int | None = None,
) -> torch.Tensor:
    """One vector per segment (row-major order) from ``hidden`` (R×L×H): mean, position-weighted mean (weights
    1..n within the text) or the text's last token. Segments are numbered 1..k within each row, as
    :func:`text2token.packing.pack` makes them. With ``num_segments`` given (the host knows it) nothing here waits for
    the device."""
    _check_mode(mode)
    rows, length, size = hidden.shape
    real = segment_ids > 0
    counts = segment_ids.max(dim=1).values  # segments in each row
    offsets = counts.cumsum(0) - counts
    n = int(counts.sum()) if num_segments is None else num_segments
    # each token's global segment number; padding goes to an extra slot n, dropped at the end
    index = torch.where(real, offsets.unsqueeze(1) + segment_ids - 1, n).reshape(-1)
    flat_h = hidden.reshape(-1, size)
    if mode == "last":
        positions = torch.arange(rows * length, device=hidden.device)
        last = torch.full((n + 1,), -1, dtype=torch.long, device=hidden.device)
        last = last.scatter_reduce(0, index, positions, reduce="amax")
        return flat_h[last[:n]]
    weights = real.reshape(-1).to(hidden.dtype)
    if mode == "weighted_mean":
        weights = weights * (position_ids.reshape(-1) + 1).to(hidden.dtype)
    summed = torch.zeros(n + 1, size, dtype=hidden.dtype, device=hidden.device)
    summed.index_add_(0, index, flat_h * weights.unsqueeze(1))
    total = torch.zeros(n + 1, dtype=hidden.dtype, device=hidden.device).index_add_(0, index, weights)
    return summed[:n] / total[:n].clamp(min=1).unsqueeze(1)

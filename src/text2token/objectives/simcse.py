"""The unsupervised SimCSE objective as LLM2Vec uses it (the baseline Text2Token is measured against).

Each text is encoded twice with dropout active; the two views of a text are positives, every other
text of the (global) batch is a negative: cross-entropy over cosine similarities / temperature.

``center``: the cosines are taken after subtracting the batch's mean pooled vector (both views, no gradient
through it) — the vectors the isotropy correction (text2token.isotropy) leaves, so the term does not spend its
gradient on the common direction that correction removes for free. The token KL of ``combined`` still reads
the raw pooled state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Objective, ObjectiveOutput


def simcse_loss(
    view_a: torch.Tensor,
    view_b: torch.Tensor,
    temperature: float = 0.05,
    gather_negatives: bool = False,
    center: bool = False,
) -> torch.Tensor:
    """``view_a``/``view_b``: B×H pooled embeddings of the same texts under two dropout masks.

    With ``gather_negatives`` (several processes), ``view_b`` is all-gathered with gradients so that
    each text sees the negatives of the whole global batch, as on one process. With ``center``, each
    process's batch mean of both views (detached) is subtracted before the cosines.
    """
    a, b = view_a.float(), view_b.float()
    if center:
        mean = torch.cat([a, b]).mean(dim=0, keepdim=True).detach()
        a, b = a - mean, b - mean
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    offset = 0
    if gather_negatives and torch.distributed.is_available() and torch.distributed.is_initialized():
        from torch.distributed.nn.functional import all_gather

        parts = all_gather(b)
        offset = sum(p.shape[0] for p in parts[: torch.distributed.get_rank()])
        b = torch.cat(parts, dim=0)
    scores = a @ b.T / temperature
    labels = torch.arange(a.shape[0], device=a.device) + offset
    return F.cross_entropy(scores, labels)


def set_attention_dropout(backbone: torch.nn.Module, p: float) -> float:
    """Set the attention-probability dropout of every attention module (and the config); return the old value.

    Decoder LMs ship with 0.0; LLM2Vec trains SimCSE with 0.3.
    """
    old = float(getattr(backbone.config, "attention_dropout", 0.0) or 0.0)
    backbone.config.attention_dropout = p
    for module in backbone.modules():
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = p
    return old


class SimCSE(Objective):
    """Two dropout views per text; in-batch (and, across processes, global) negatives."""

    name = "simcse"
    views = 2

    def __init__(
        self, temperature: float = 0.05, dropout: float = 0.3, gather_negatives: bool = False, center: bool = False
    ):
        self.temperature = temperature
        self.attention_dropout = dropout
        self.gather_negatives = gather_negatives
        self.center = center

    def __call__(self, views, batch, model) -> ObjectiveOutput:
        loss = simcse_loss(
            views[0], views[1], self.temperature, gather_negatives=self.gather_negatives, center=self.center
        )
        return ObjectiveOutput({self.name: loss})

    def describe(self) -> str:
        return f"SimCSE (dropout {self.attention_dropout:g}{', centred' if self.center else ''})"

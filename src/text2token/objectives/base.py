"""The objective seam: what a training stage optimises.

An objective says how many *views* of a batch it needs (forward passes of the same texts; SimCSE
needs two dropout views), may ask for attention dropout while it trains, and maps the pooled views
of a batch to named loss components (summed into the loss) and metrics (diagnostics). The training
loop logs every component and metric it gets back; it knows nothing about any objective.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ObjectiveOutput:
    losses: dict[str, torch.Tensor]  # named components; the loss is their sum
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # detached; read only when logged

    @property
    def loss(self) -> torch.Tensor:
        return sum(self.losses.values())


class Objective:
    """Base class. Subclasses set ``name`` and implement ``__call__``."""

    name: str = "objective"
    views: int = 1  # forward passes of each batch the objective needs
    attention_dropout: float | None = None  # attention dropout while training (None: leave the model's)
    token_level: bool = False  # True: views are per-token hidden states (B×L×H) instead of pooled vectors

    def attach_targets(self, batch, model) -> None:
        """Before the training forward: targets that need a forward pass of their own (e.g. from the frozen
        model) are computed here and set on ``batch``, so their activations are freed before the training
        forward keeps its own for the backward pass."""

    def __call__(self, views: list[torch.Tensor], batch, model) -> ObjectiveOutput:
        """``views``: ``self.views`` pooled tensors (B×H) of ``batch``; ``model`` the (unwrapped) Text2TokenModel."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

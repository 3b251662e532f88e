"""A weighted sum of objectives, e.g. Text2Token's token KL plus a SimCSE term.

The batch is run ``max(views)`` times once; each part sees the first ``part.views`` views. Each
part's components are logged scaled by its weight, so the logged components sum to the loss.
"""

from __future__ import annotations

from .base import Objective, ObjectiveOutput


class Combined(Objective):
    name = "combined"

    def __init__(self, parts: list[tuple[Objective, float]]):
        if not parts:
            raise ValueError("Combined needs at least one objective")
        self.parts = parts
        self.views = max(p.views for p, _ in parts)
        dropouts = [p.attention_dropout for p, _ in parts if p.attention_dropout is not None]
        self.attention_dropout = max(dropouts) if dropouts else None

    def attach_targets(self, batch, model) -> None:
        for part, _ in self.parts:
            part.attach_targets(batch, model)

    def __call__(self, views, batch, model) -> ObjectiveOutput:
        losses, metrics = {}, {}
        for part, weight in self.parts:
            out = part(views[: part.views], batch, model)
            for name, value in out.losses.items():
                if name in losses:
                    raise ValueError(f"two parts of a Combined objective return the loss component '{name}'")
                losses[name] = weight * value
            metrics.update(out.metrics)
        return ObjectiveOutput(losses, metrics)

    def describe(self) -> str:
        return " + ".join(f"{w:g}×{p.describe()}" for p, w in self.parts)

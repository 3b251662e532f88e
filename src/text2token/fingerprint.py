"""A cheap, stable fingerprint of a model's weights, shared by everything that caches or resumes work computed with
a model (stage-2 priors and targets, streaming encode, index builds, the checkpoint loader)."""

from __future__ import annotations

import hashlib

import torch


def model_fingerprint(model: torch.nn.Module, sample: int = 4096) -> str:
    """A cheap fingerprint of a model's weights: shapes plus a strided sample of every tensor."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // sample)
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(flat[::step][:sample].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]

"""Post-hoc removal of the LM head's dominant directions from embeddings (a training-free filter).

An LM head maps a pooled vector ``h`` to logits ``W h``. The top right singular vectors of ``W`` (V×H) span the
directions along which *every* token's logit moves together, above all the frequent tokens' (the vocabulary-space
bias that stage 2's prior-ratio targets aim at). Projecting them out of the embedding, ``h - U Uᵀ h``, removes that
shared component before cosine similarity. ``k`` = how many directions; the projection is the same for every text, so
it is a fixed linear map (H×H) applied after pooling and before normalisation.
"""

from __future__ import annotations

import torch

from .errors import Text2TokenError


def head_directions(head_weight: torch.Tensor, k: int) -> torch.Tensor:
    """The top-``k`` right singular vectors of the LM head weight (V×H), as a k×H fp32 matrix with orthonormal rows
    (eigenvectors of ``WᵀW``, H×H, so a 262k-token vocabulary costs one H×H product)."""
    hidden = head_weight.shape[1]
    if not 0 < k < hidden:
        raise Text2TokenError(f"directions to remove must be between 1 and {hidden - 1} (the hidden size - 1), got {k}")
    w = head_weight.detach().float()
    gram = w.T @ w
    _, vectors = torch.linalg.eigh(gram)  # ascending eigenvalues
    return vectors[:, -k:].flip(-1).T.contiguous()  # largest first; a vector's sign does not change U Uᵀ


def remove_directions(embeddings: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``embeddings - (embeddings Uᵀ) U`` for orthonormal rows ``U`` (k×H), in fp32."""
    e = embeddings.float()
    u = directions.to(e.device)
    return e - (e @ u.T) @ u

"""The isotropy correction: subtract a mean vector and project out the top principal directions ("all-but-the-top",
Mu & Viswanath, ICLR 2018), fitted on a sample of generic texts and shipped inside a saved model folder.

Pooled LM states share one large common direction (every text's vector leans the same way), which compresses
cosine similarities towards a constant. With ``μ`` the mean raw embedding of the fit texts and ``V`` (D×H) the top-D
principal directions of the centred embeddings, the corrected vector is

    ``y = (I − VᵀV)(x − μ)``  — a fixed affine map: ``y = W x + b`` with ``W = I − VᵀV``, ``b = −W μ``

applied after pooling and before any normalisation, on every path that yields a dense vector (``encode``, the index's
dense rows, the server, the ONNX/OpenVINO graphs, and the sentence-transformers folder as a ``Dense`` module). The
vocabulary view (``explain``, ``compare``, sparse retrieval) keeps reading the *raw* pooled state through the LM
head, which was trained on it.

Fitting always reads raw vectors (never corrected ones), so refitting a folder that already carries a correction on
the same texts gives the same correction.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import Text2TokenError
from .layout import ISOTROPY_FILE
from .modes import ISOTROPY_MIN_FIT_TEXTS as MIN_FIT_TEXTS


class TooFewTexts(Text2TokenError):
    """A fit asked of fewer texts than a correction needs."""


@dataclass
class IsotropyCorrection:
    """``y = (I − VᵀV)(x − μ)``: ``mean`` μ (H, float32), ``directions`` V (D×H, orthonormal rows, float32; D may be
    0), and ``fitted_on`` (what it was fitted on: corpus, texts, seed, directions — recorded in the folder)."""

    mean: torch.Tensor
    directions: torch.Tensor
    fitted_on: dict = field(default_factory=dict)

    def __post_init__(self):
        self.mean = self.mean.detach().float().cpu().reshape(-1)
        hidden = self.mean.numel()
        self.directions = self.directions.detach().float().cpu().reshape(-1, hidden)

    @property
    def hidden_size(self) -> int:
        return self.mean.numel()

    @property
    def num_directions(self) -> int:
        return self.directions.shape[0]

    @classmethod
    def fit(cls, embeddings, directions: int, fitted_on: dict | None = None) -> IsotropyCorrection:
        """Fit on raw embeddings (N×H, numpy or torch): their mean, and the top ``directions`` right singular
        vectors of the centred embeddings. Needs at least :data:`MIN_FIT_TEXTS` texts and more texts than
        directions; ``0 ≤ directions < H``."""
        x = torch.as_tensor(embeddings).detach().to(torch.float64).cpu()
        if x.dim() != 2:
            raise Text2TokenError(f"an isotropy correction is fitted on N×H embeddings, got shape {tuple(x.shape)}")
        n, hidden = x.shape
        if not 0 <= directions < hidden:
            raise Text2TokenError(
                f"directions to remove must be between 0 and {hidden - 1} (the hidden size - 1), got {directions}"
            )
        need = max(MIN_FIT_TEXTS, directions + 1)
        if n < need:
            raise TooFewTexts(
                f"an isotropy correction needs at least {need} texts to fit, got {n} "
                "(give a larger corpus or more --texts)"
            )
        if not torch.isfinite(x).all():
            raise Text2TokenError("cannot fit an isotropy correction: the embeddings hold NaN or infinite values")
        mean = x.mean(0)
        if directions:
            _, _, vt = torch.linalg.svd(x - mean, full_matrices=False)
            top = vt[:directions]
            # a singular vector's sign is arbitrary; fix it (largest |component| positive) so refits are identical
            signs = torch.sign(top.gather(1, top.abs().argmax(1, keepdim=True)))
            top = top * signs
        else:
            top = torch.zeros(0, hidden, dtype=torch.float64)
        record = {"directions": directions, "texts": n, **(fitted_on or {})}
        return cls(mean.float(), top.float(), record)

    # ------------------------------------------------------------------ applying
    def apply(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The corrected embeddings (…×H, float32, on the input's device)."""
        x = embeddings.float()
        centred = x - self.mean.to(x.device)
        if not self.num_directions:
            return centred
        v = self.directions.to(x.device)
        return centred - (centred @ v.T) @ v

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The correction as ``y = W x + b`` (``W`` H×H, ``b`` H, float32): ``W = I − VᵀV``, ``b = −W μ`` — what the
        sentence-transformers ``Dense`` module and exported graphs carry."""
        v = self.directions.double()
        weight = torch.eye(self.hidden_size, dtype=torch.float64) - v.T @ v
        bias = -(weight @ self.mean.double())
        return weight.float(), bias.float()

    def fingerprint(self) -> str:
        """A short hash of the correction's numbers (for caches keyed on what produces a vector)."""
        h = hashlib.sha256(self.mean.numpy().tobytes())
        h.update(self.directions.numpy().tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        """What a folder's settings record about it."""
        return {"file": ISOTROPY_FILE, **self.fitted_on, "directions": self.num_directions}

    # ------------------------------------------------------------------ files
    def save(self, folder: str | Path) -> None:
        """Write ``isotropy.safetensors`` (mean, directions; ``fitted_on`` in the metadata) into ``folder`` (called
        inside an atomic folder write)."""
        from safetensors.torch import save_file

        save_file(
            {"mean": self.mean.contiguous(), "directions": self.directions.contiguous()},
            str(Path(folder) / ISOTROPY_FILE),
            metadata={"fitted_on": json.dumps(self.fitted_on)},
        )

    @classmethod
    def load(cls, folder: str | Path, hidden_size: int | None = None) -> IsotropyCorrection | None:
        """The correction a folder carries, or None if it has none; a damaged or mismatched file is a clear error."""
        path = Path(folder) / ISOTROPY_FILE
        if not path.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                mean, directions = f.get_tensor("mean"), f.get_tensor("directions")
            fitted_on = json.loads(meta.get("fitted_on", "{}"))
        except Exception as exc:  # noqa: BLE001  (safetensors raises several types for a damaged file)
            raise Text2TokenError(
                f"{path} is damaged ({exc}); refit it with `text2token postprocess` or remove it with --none"
            ) from None
        if mean.dim() != 1 or directions.dim() != 2 or directions.shape[1] != mean.numel():
            raise Text2TokenError(
                f"{path} is damaged: mean {tuple(mean.shape)} and directions {tuple(directions.shape)} do not fit"
            )
        if hidden_size is not None and mean.numel() != hidden_size:
            raise Text2TokenError(
                f"{path} was fitted for {mean.numel()}-dimensional vectors, but this model's are {hidden_size}"
            )
        return cls(mean, directions, fitted_on)


def st_dense_module(correction: IsotropyCorrection):
    """The correction as a sentence-transformers ``Dense`` module (identity activation, weight ``I − VᵀV``, bias
    ``−(I − VᵀV)μ``), so ``SentenceTransformer(folder)`` and mteb load the corrected vectors with no custom code."""
    from sentence_transformers.sentence_transformer.modules import Dense

    weight, bias = correction.affine()
    hidden = correction.hidden_size
    return Dense(hidden, hidden, bias=True, activation_function=torch.nn.Identity(), init_weight=weight, init_bias=bias)

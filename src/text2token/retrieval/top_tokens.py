"""What an index keeps of each text, computed in one pass: its L2-normalised dense embedding, its ``top_k`` most
probable LM-head tokens with their probabilities, and the running sum of the LM-head logits (for the corpus prior);
and the token weights a sparse vector is made of (the prior ratio p / (p + π), the same formula stage 2's targets
use, or p itself). :mod:`.build` writes these into an index folder; :mod:`.search` encodes queries with them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ..errors import Text2TokenError
from ..modes import SparseWeighting
from ..targets.model_derived import prior_from_logit_sum, prior_ratio

INDEX_FILE = "index.json"  # an index folder's settings and file list
DEFAULT_TOP_K = 256  # tokens per document
DEFAULT_QUERY_TOP_K = 256  # tokens per query


class TopTokens:
    """One pass over texts: L2-normalised dense embeddings (N×H), each text's ``top_k`` most probable tokens and
    their probabilities (N×k), and the sum of the LM-head logits (V, float64) for a corpus prior."""

    def __init__(
        self,
        model,
        texts: list[str],
        top_k: int,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        desc: str = "index",
        on_batch=None,
    ):
        if not texts:
            raise Text2TokenError("no texts to encode")
        model.check_top_k(top_k)
        self.vocab = model.lm_head.weight.shape[0]
        self.dense = np.empty((len(texts), model.backbone.config.hidden_size), dtype=np.float32)
        self.ids = np.empty((len(texts), top_k), dtype=np.int64)
        self.probs = np.empty((len(texts), top_k), dtype=np.float32)
        logit_sum = None
        with torch.inference_mode():
            for idx, pooled in model._iter_pooled(texts, batch_size, desc, show_progress_bar):
                rows = np.asarray(idx)
                dense = model.postprocess(pooled)  # encode's vectors (isotropy correction); the head reads raw
                self.dense[rows] = torch.nn.functional.normalize(dense, dim=-1).cpu().numpy()
                logits = model.vocab_logits(pooled)
                top = torch.softmax(logits, dim=-1).topk(top_k, dim=-1)
                self.ids[rows], self.probs[rows] = top.indices.cpu().numpy(), top.values.cpu().numpy()
                batch_sum = logits.double().sum(dim=0).cpu()
                logit_sum = batch_sum if logit_sum is None else logit_sum + batch_sum
                if on_batch is not None:
                    on_batch(len(rows))
        self.logit_sum = logit_sum.numpy()

    def prior(self) -> np.ndarray:
        """``π = softmax(mean logits)`` over these texts (float32, V): the corpus prior stage 2 uses."""
        return prior_from_logit_sum(torch.from_numpy(self.logit_sum), len(self.dense)).numpy()

    def sparse(
        self, weighting: str = "prior_ratio", prior: np.ndarray | None = None, top_k: int | None = None
    ) -> sp.csr_matrix:
        """Texts × vocabulary CSR: the first ``top_k`` tokens of each text, weighted by :func:`weights`."""
        k = top_k or self.ids.shape[1]
        ids = self.ids[:, :k]
        w = weights(self.probs[:, :k], ids, prior, weighting)
        rows = np.repeat(np.arange(len(ids)), k)
        return sp.csr_matrix((w.ravel(), (rows, ids.ravel())), shape=(len(ids), self.vocab), dtype=np.float32)


def weights(p: np.ndarray, ids: np.ndarray, prior: np.ndarray | None, weighting: str) -> np.ndarray:
    """Each row's token weights from its top tokens' probabilities ``p`` and ids (``prob``: p; ``prior_ratio``:
    p / (p + π)), L2-normalised, float32."""
    p = p.astype(np.float64)
    if weighting == "prior_ratio":
        w = prior_ratio(p, prior[ids])
    elif weighting == "prob":
        w = p
    else:
        raise Text2TokenError(f"weighting must be one of {', '.join(SparseWeighting.values())}, got '{weighting}'")
    return (w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def sparse_vectors(
    model, texts: list[str], top_k: int = 128, batch_size: int = 32, show_progress_bar: bool = False
) -> sp.csr_matrix:
    """Texts × vocabulary CSR matrix: each row the top-``top_k`` probabilities of softmax(lm_head(pooled)),
    L2-normalised (so the dot product of two rows is their cosine in vocabulary space) — the model's own view of
    a text, without the corpus prior an index divides by."""
    return TopTokens(model, texts, top_k, batch_size, show_progress_bar).sparse("prob")

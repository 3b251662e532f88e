"""Text2TokenModel: a causal LM backbone + pooling + the frozen LM head as a vocabulary view.

>>> from text2token import Text2TokenModel
>>> model = Text2TokenModel.from_pretrained("default")             # doctest: +SKIP
>>> emb = model.encode(["A cat sat on the mat."])                # doctest: +SKIP
>>> model.explain(["A cat sat on the mat."], top_k=5)            # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import tokenization
from .attention import set_attention
from .backbone import Backbone, load_backbone
from .devices import default_dtype, warn_if_bf16_is_emulated
from .directions import head_directions, remove_directions
from .errors import ConfigError, Text2TokenError
from .isotropy import IsotropyCorrection, st_dense_module
from .layout import MODEL_CONFIG_NAME
from .model_card import write_model_card
from .modes import CHUNK_SIZE, Attention, Pooling
from .packing import packed_attention_mask
from .pooling import default_template, pool, pool_segments
from .progress import progress_bar
from .st_export import write_sentence_transformers_files
from .textio import atomic_directory
from .version import __version__

logger = logging.getLogger(__name__)
DEFAULT_POOLING = "last"
DEFAULT_ATTENTION = "causal"
DEFAULT_MAX_LENGTH = 512  # encoding length when none is given: long enough for passages, capped by the context
_UNSET = object()
_ENCODE_WINDOW = CHUNK_SIZE  # texts tokenized (and length-sorted) at a time by encode/explain


def _num_batches(n_texts: int, batch_size: int) -> int:
    """How many batches ``Text2TokenModel._batches`` yields (batches never span two windows)."""
    return sum(-(-min(_ENCODE_WINDOW, n_texts - b) // batch_size) for b in range(0, n_texts, _ENCODE_WINDOW))


def encoding_max_length(config, requested: int | None) -> int:
    """Tokens per text when encoding: ``requested``, or ``DEFAULT_MAX_LENGTH`` capped by the backbone's context
    (``max_position_embeddings``); a requested length beyond the context is an error."""
    context = getattr(config, "max_position_embeddings", None)
    if requested is None:
        return min(DEFAULT_MAX_LENGTH, context) if context else DEFAULT_MAX_LENGTH
    if requested < 8:
        raise ConfigError(f"max_length must be at least 8, got {requested}")
    if context and requested > context:
        raise ConfigError(f"max_length {requested} is beyond the backbone's context ({context} positions)")
    return requested


class Text2TokenModel(torch.nn.Module):
    """An embedder: ``encode`` pools the last hidden layer; ``vocab_logits`` projects the
    pooled vector through the backbone's own LM head (in fp32)."""

    def __init__(
        self,
        backbone: Backbone,
        pooling: str = DEFAULT_POOLING,
        attention: str = DEFAULT_ATTENTION,
        template: str | None | object = _UNSET,
        max_length: int | None = None,
        provenance: dict | None = None,
        prompts: dict[str, str] | None = None,
        training_record: dict | None = None,
    ):
        super().__init__()
        Pooling.require(pooling, "pooling", ConfigError)
        Attention.require(attention, "attention", ConfigError)
        max_length = encoding_max_length(backbone.model.config, max_length)
        template = default_template(pooling) if template is _UNSET else template
        if template is not None and "{text}" not in template:
            raise ConfigError(f"template must contain '{{text}}', got {template!r}")
        self.backbone = backbone.model
        self.tokenizer = backbone.tokenizer
        self.pooling = pooling
        self.attention = attention
        self.template = template
        self.max_length = max_length
        self.provenance = provenance or {"backbone": backbone.source}
        self.prompts = dict(prompts or {})  # named prompts (e.g. "query"), put before a text by encode(prompt_name=...)
        self.training_record = training_record  # what text2token training recorded in a saved folder, if anything
        self.removed_directions: torch.Tensor | None = None  # set by remove_head_directions (k×H), else None
        # the isotropy correction every dense vector gets (text2token.isotropy), or None; the vocabulary view never
        self.correction: IsotropyCorrection | None = None
        set_attention(self.backbone, attention)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        model: str = "default",
        pooling: str | None = None,
        attention: str | None = None,
        template: str | None | object = _UNSET,
        max_length: int | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> Text2TokenModel:
        """Load a trained text2token folder, a Hugging Face id or folder, a GGUF file, or ``default``.

        Settings saved in a text2token folder are used unless overridden here.
        """
        saved = {}
        config_file = Path(str(model)).expanduser() / MODEL_CONFIG_NAME
        if config_file.is_file():
            try:
                saved = json.loads(config_file.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise Text2TokenError(
                    f"{config_file} is damaged (not valid JSON: {exc}); restore it from the run "
                    "folder or save the model again"
                ) from None
            if not isinstance(saved, dict):
                raise Text2TokenError(f"{config_file} is damaged (expected a JSON object)")
        device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            dtype = default_dtype(device)
        warn_if_bf16_is_emulated(dtype, device)
        backbone = load_backbone(str(model), dtype=dtype)
        pooling = pooling or saved.get("pooling", DEFAULT_POOLING)
        if template is _UNSET:
            template = saved["template"] if "template" in saved and pooling == saved.get("pooling") else _UNSET
        provenance = saved.get("provenance") or {"backbone": str(model)}
        self = cls(
            backbone,
            pooling=pooling,
            attention=attention or saved.get("attention", DEFAULT_ATTENTION),
            template=template,
            max_length=max_length or saved.get("max_length"),
            provenance=provenance,
            prompts=saved.get("prompts"),
            training_record=saved.get("training"),
        )
        if saved:  # only a text2token folder carries a correction, fitted on the vectors of its own settings
            correction = IsotropyCorrection.load(str(model), self.backbone.config.hidden_size)
            changed = [k for k in ("pooling", "attention", "template") if k in saved and getattr(self, k) != saved[k]]
            if correction is not None and changed:
                logger.warning(
                    "%s: its isotropy correction was fitted with its own %s; not applied with the %s given here "
                    "(refit one for these settings with `text2token postprocess`)",
                    model,
                    ", ".join(changed),
                    ", ".join(f"{k} {getattr(self, k)!r}" for k in changed),
                )
                correction = None
            self.correction = correction
        return self.to(device)

    @property
    def is_trained(self) -> bool:
        """True for a folder that text2token training saved (it records its training)."""
        return self.training_record is not None

    def settings(self) -> dict:
        settings = {
            "pooling": self.pooling,
            "attention": self.attention,
            "template": self.template,
            "max_length": self.max_length,
            "provenance": self.provenance,
            "prompts": self.prompts,
            "text2token_version": __version__,
        }
        if self.correction is not None:
            settings["isotropy"] = self.correction.describe()
        return settings

    # ------------------------------------------------------------------ the isotropy correction
    def set_correction(self, correction: IsotropyCorrection | None) -> Text2TokenModel:
        """From now on every dense vector (:meth:`encode`, indexes, exports, a saved folder) gets ``correction``
        (None: raw pooled vectors, as a folder without one)."""
        if correction is not None and correction.hidden_size != self.backbone.config.hidden_size:
            raise Text2TokenError(
                f"the isotropy correction is for {correction.hidden_size}-dimensional vectors, "
                f"this model's are {self.backbone.config.hidden_size}"
            )
        self.correction = correction
        return self

    def fit_correction(
        self,
        texts: list[str],
        directions: int,
        batch_size: int = 32,
        fitted_on: dict | None = None,
        show_progress_bar: bool | None = None,
    ) -> IsotropyCorrection:
        """Fit an isotropy correction on the *raw* pooled vectors of ``texts`` (whatever correction the model has
        now is ignored, so a refit on the same texts gives the same one), set it, and return it."""
        raw = self.encode(texts, batch_size=batch_size, show_progress_bar=show_progress_bar, postprocess=False)
        correction = IsotropyCorrection.fit(raw, directions, fitted_on)
        self.set_correction(correction)
        return correction

    @property
    def correction_id(self) -> str | None:
        """A fingerprint of the isotropy correction (None without one): with the weights' fingerprint, what
        identifies the dense vectors this model produces (resume checks, index records, mteb revisions)."""
        return self.correction.fingerprint() if self.correction is not None else None

    def postprocess(self, pooled: torch.Tensor) -> torch.Tensor:
        """Raw pooled vectors (B×H) → this model's dense vectors (float32): the isotropy correction, then the
        LM-head directions filter, if set. The one place both are applied."""
        emb = pooled.float()
        if self.correction is not None:
            emb = self.correction.apply(emb)
        if self.removed_directions is not None:
            emb = remove_directions(emb, self.removed_directions)
        return emb

    def remove_head_directions(self, k: int) -> Text2TokenModel:
        """From now on, :meth:`encode` projects the LM head's top-``k`` directions out of every embedding
        (:mod:`text2token.directions`; ``k = 0`` turns it off). An evaluation-time option: a model with it set is not
        saved (the sentence-transformers folder does not carry the projection yet)."""
        self.removed_directions = head_directions(self.lm_head.weight, k) if k else None
        return self

    def save_pretrained(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        """Save atomically as a plain Hugging Face folder plus ``text2token_config.json``, that is also a
        native sentence-transformers folder (``SentenceTransformer(path)``, no remote code) with a model card."""
        if self.removed_directions is not None:
            raise Text2TokenError(
                "this model removes LM-head directions from its embeddings "
                "(remove_head_directions), which a saved folder cannot carry yet; call "
                "remove_head_directions(0) before saving"
            )

        with atomic_directory(path) as tmp:
            self.backbone.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            settings = self.settings()
            if extra:
                settings.update(extra)
            (tmp / MODEL_CONFIG_NAME).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
            if self.correction is not None:
                self.correction.save(tmp)
            write_sentence_transformers_files(
                tmp,
                pooling=self.pooling,
                template=self.template,
                max_length=self.max_length,
                hidden_size=self.backbone.config.hidden_size,
                tokenizer=self.tokenizer,
                dense=st_dense_module(self.correction) if self.correction is not None else None,
            )
            write_model_card(tmp, settings, name=Path(path).name)

    # ------------------------------------------------------------------ tensors
    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    @property
    def trunk(self) -> torch.nn.Module:
        return self.backbone.base_model

    @property
    def lm_head(self) -> torch.nn.Module:
        return self.backbone.get_output_embeddings()

    def tokenize(self, texts: list[str], pad_to_multiple_of: int = 1) -> dict[str, torch.Tensor]:
        """Tokenize ``texts`` (wrapped in the template, if any) to at most ``max_length`` tokens, padded (to the
        longest, rounded up to ``pad_to_multiple_of``).

        With a template, the *text* is truncated so that the whole template always fits.
        """
        return self._pad(self.token_ids(texts), pad_to_multiple_of)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of ``texts`` as :meth:`tokenize` makes them, without padding (:func:`text2token.tokenization.
        token_ids`: an empty text is an error naming its position)."""
        template = self.template
        overhead = self._template_overhead(template) if template is not None else None
        return tokenization.token_ids(self.tokenizer, texts, template, self.max_length, overhead)

    def _pad(self, ids: list[list[int]], multiple_of: int = 1) -> dict[str, torch.Tensor]:
        """Pad token id lists on the tokenizer's padding side into ``input_ids`` / ``attention_mask``, to the
        longest list rounded up to ``multiple_of`` tokens (a few fixed widths, e.g. for a compiled step)."""
        input_ids, mask = tokenization.pad(self.tokenizer, ids, multiple_of)
        return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}

    def text_budget(self) -> int:
        """Tokens of text :meth:`tokenize` keeps: ``max_length`` less what the template and special tokens take."""
        return self.max_length - self._template_overhead(self.template if self.template is not None else "{text}")

    def count_truncated(self, texts: list[str]) -> int:
        """How many of ``texts`` are longer than ``max_length`` tokens (template included) and
        will be truncated by :meth:`tokenize`."""
        budget = self.text_budget()
        lengths = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return sum(len(ids) > budget for ids in lengths)

    def _template_overhead(self, template: str) -> int:
        """Tokens the template (with special tokens) adds around the text; computed once per template."""
        cache = self.__dict__.setdefault("_overhead_cache", {})
        if template not in cache:
            cache[template] = tokenization.template_overhead(self.tokenizer, template)
        return cache[template]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        num_segments: int | None = None,
        return_hidden: bool = False,
    ) -> torch.Tensor:
        """Pooled last-layer hidden states (B×H), in the backbone's dtype. With ``segment_ids`` (packed rows, see
        :mod:`text2token.packing`) one vector per text, in row-major segment order (``num_segments``, if the caller
        knows it, spares a device sync). ``return_hidden``: the per-token hidden states (B×L×H) instead, for
        token-level objectives (MNTP)."""
        if segment_ids is not None:
            return self._pooled_segments(input_ids, segment_ids, position_ids, num_segments, return_hidden)
        hidden = self.trunk(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return hidden if return_hidden else pool(hidden, attention_mask, self.pooling)

    def forward_packed(self, packed) -> torch.Tensor:
        """Pooled vectors (one per text, in ``packed.texts`` order) of packed rows (:mod:`text2token.packing`):
        each text attends only to itself, under this model's attention mode, with positions restarting per text."""
        return self._pooled_segments(packed.input_ids, packed.segment_ids, packed.position_ids, len(packed.texts))

    def _pooled_segments(self, input_ids, segment_ids, position_ids, num_segments=None, return_hidden=False):

        dtype = next(self.trunk.parameters()).dtype
        if torch.is_autocast_enabled(input_ids.device.type):
            dtype = torch.get_autocast_dtype(input_ids.device.type)
        mask = packed_attention_mask(segment_ids, self.attention == "causal", dtype)
        hidden = self.trunk(input_ids=input_ids, attention_mask=mask, position_ids=position_ids).last_hidden_state
        return hidden if return_hidden else pool_segments(hidden, segment_ids, position_ids, self.pooling, num_segments)

    def vocab_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """``lm_head(pooled)`` in fp32 (B×V); only pooled vectors, never per-token logits."""
        head = self.lm_head
        bias = head.bias.float() if getattr(head, "bias", None) is not None else None
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            return F.linear(pooled.float(), head.weight.float(), bias)

    # ------------------------------------------------------------------ user API
    def _batches(self, texts: list[str], batch_size: int):
        """Yield (indices, padded batch), tokenizing ``window`` texts at a time and batching them in
        descending *token* length, so a batch holds texts of near-equal length and little padding
        (sorting by characters left ~36% padding on the bundled corpus; by tokens ~7%)."""
        window = _ENCODE_WINDOW
        for base in range(0, len(texts), window):
            ids = self.token_ids(texts[base : base + window])
            for rows in tokenization.length_sorted_batches(ids, batch_size):
                yield base + rows, self._pad([ids[r] for r in rows])

    @torch.inference_mode()
    def encode(
        self,
        texts: str | list[str],
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        prompt: str | None = None,
        prompt_name: str | None = None,
        postprocess: bool = True,
    ) -> np.ndarray | torch.Tensor:
        """Embed ``texts``; float32 (N×H), rows in input order (a single string gives one H vector).

        ``postprocess=False``: the raw pooled vectors, without the model's isotropy correction (what a fit reads).

        As in sentence-transformers: ``prompt`` is put before every text (inside the model's template, if any), or
        ``prompt_name`` names one of :attr:`prompts`; ``convert_to_tensor`` returns a torch tensor (so does
        ``convert_to_numpy=False``)."""
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("encode expects a string or a list of strings")
        prompt = self.resolve_prompt(prompt, prompt_name)
        if prompt:
            texts = [prompt + t for t in texts]
        if show_progress_bar is None:
            show_progress_bar = len(texts) > 4 * batch_size
        out = torch.empty(len(texts), self.backbone.config.hidden_size, dtype=torch.float32)
        for idx, pooled in self._iter_pooled(texts, batch_size, "encode", show_progress_bar):
            emb = self.postprocess(pooled) if postprocess else pooled.float()
            if normalize_embeddings:
                emb = F.normalize(emb, dim=-1)
            out[torch.as_tensor(idx)] = emb.cpu()
        if single:
            out = out[0]
        return out if convert_to_tensor or not convert_to_numpy else out.numpy()

    def resolve_prompt(self, prompt: str | None = None, prompt_name: str | None = None) -> str | None:
        """The prompt text to put before every text: ``prompt`` itself, or the one of :attr:`prompts` that
        ``prompt_name`` names (an error naming the known prompts if there is none); giving both is an error."""
        if prompt_name is None:
            return prompt
        if prompt is not None:
            raise Text2TokenError("give a prompt or a prompt name, not both")
        if prompt_name not in self.prompts:
            known = ", ".join(sorted(self.prompts)) or "none"
            raise Text2TokenError(f"no prompt named '{prompt_name}' in this model (prompts: {known})")
        return self.prompts[prompt_name]

    def same_settings(
        self, model: str, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Text2TokenModel:
        """Another backbone or folder (e.g. the untrained base, as a baseline) loaded with this model's pooling,
        attention, template and maximum length, so the two are compared on their weights alone."""
        return Text2TokenModel.from_pretrained(
            model,
            pooling=self.pooling,
            attention=self.attention,
            template=self.template,
            max_length=self.max_length,
            device=device,
            dtype=dtype,
        )

    def encode_query(self, texts: str | list[str], **kwargs) -> np.ndarray | torch.Tensor:
        """:meth:`encode` with the model's ``query`` prompt, if it has one."""
        if "query" in self.prompts and "prompt" not in kwargs:
            kwargs.setdefault("prompt_name", "query")
        return self.encode(texts, **kwargs)

    def encode_document(self, texts: str | list[str], **kwargs) -> np.ndarray | torch.Tensor:
        """:meth:`encode` with the model's ``document`` prompt, if it has one."""
        if "document" in self.prompts and "prompt" not in kwargs:
            kwargs.setdefault("prompt_name", "document")
        return self.encode(texts, **kwargs)

    @staticmethod
    def similarity(a, b) -> torch.Tensor:
        """Cosine similarity matrix (len(a) × len(b)) of two sets of embeddings (numpy or torch, 1-D or 2-D), as
        ``SentenceTransformer.similarity`` with its default cosine."""
        a, b = (torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float() for x in (a, b))
        a, b = (x.unsqueeze(0) if x.dim() == 1 else x for x in (a, b))
        return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T

    @contextmanager
    def _eval_mode(self):
        """Eval mode (no dropout) for the block, then back to the mode the model was in."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    @torch.inference_mode()
    def _iter_pooled(self, texts: list[str], batch_size: int, desc: str, show_progress_bar: bool):
        """Yield ``(rows, pooled)`` over :meth:`_batches`, in eval mode, with a progress bar."""
        with self._eval_mode():
            batches = progress_bar(
                self._batches(texts, batch_size),
                total=_num_batches(len(texts), batch_size),
                desc=desc,
                disable=not show_progress_bar,
            )
            for idx, enc in batches:
                enc = {k: v.to(self.device) for k, v in enc.items()}
                yield idx, self(enc["input_ids"], enc["attention_mask"])

    @torch.inference_mode()
    def iter_vocab_logits(
        self, texts: list[str], batch_size: int = 32, desc: str = "logits", show_progress_bar: bool = False
    ):
        """Yield ``(rows, logits)``: fp32 ``lm_head(pooled)`` (B×V) for batches of ``texts`` and the row
        indices into ``texts`` they belong to. Batches come in token-length order (as in :meth:`encode`),
        not input order; every row appears exactly once."""
        for idx, pooled in self._iter_pooled(texts, batch_size, desc, show_progress_bar):
            yield idx, self.vocab_logits(pooled)

    def check_top_k(self, top_k: int) -> None:
        """A clear error for a number of top tokens this model cannot give (below 1, or beyond its vocabulary)."""
        vocab = self.lm_head.weight.shape[0]
        if not 1 <= top_k <= vocab:
            raise Text2TokenError(
                f"top_k {top_k} is "
                + ("below 1" if top_k < 1 else f"larger than the model's vocabulary ({vocab} tokens)")
            )

    @torch.inference_mode()
    def explain(self, texts: str | list[str], top_k: int = 10, batch_size: int = 32) -> list[list[tuple[str, float]]]:
        """Top-k tokens of ``softmax(lm_head(embedding))`` for each text, with probabilities."""
        self.check_top_k(top_k)
        texts = [texts] if isinstance(texts, str) else list(texts)
        result: list = [None] * len(texts)
        for idx, logits in self.iter_vocab_logits(texts, batch_size):
            top = torch.softmax(logits, dim=-1).topk(top_k, dim=-1)
            for row, i in enumerate(idx):
                tokens = [self.tokenizer.decode([t]) for t in top.indices[row].tolist()]
                result[i] = list(zip(tokens, top.values[row].tolist()))
        return result

    @torch.inference_mode()
    def compare(self, text_a: str, text_b: str, top_k: int = 10) -> dict:
        """Why two texts are similar: the embeddings' cosine, and the tokens that carry the overlap of their
        vocabulary distributions ``Σ_v p_a(v)·p_b(v)`` (each token's share of that sum, largest first)."""
        self.check_top_k(top_k)
        with self._eval_mode():
            enc = {k: v.to(self.device) for k, v in self.tokenize([text_a, text_b]).items()}
            pooled = self(enc["input_ids"], enc["attention_mask"]).float()
            probs = torch.softmax(self.vocab_logits(pooled), dim=-1)
        product = probs[0] * probs[1]
        overlap = float(product.sum())
        top = product.topk(top_k)
        tokens = [
            {
                "token": self.tokenizer.decode([i]),
                "p_a": float(probs[0, i]),
                "p_b": float(probs[1, i]),
                "share": float(v) / overlap if overlap > 0 else 0.0,
            }
            for v, i in zip(top.values.tolist(), top.indices.tolist())
        ]
        return {"cosine": float(F.cosine_similarity(pooled[0], pooled[1], dim=0)), "overlap": overlap, "tokens": tokens}

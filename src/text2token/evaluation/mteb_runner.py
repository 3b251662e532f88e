"""MTEB 2.x: a text2token model as an mteb encoder, and running benchmarks or task lists.

``MTEBEncoder`` satisfies mteb's ``EncoderProtocol`` (``encode(inputs: DataLoader, *, task_metadata,
hf_split, hf_subset, prompt_type=None)``) and carries an ``mteb_model_meta``. Prompts follow mteb's
priority rules (task+type, task, task-type+type, task type, query/document) and are put in front of
each text (inside the PromptEOL template when the model uses one).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import Text2TokenError
from ..fingerprint import model_fingerprint
from ..model import Text2TokenModel

# The task types of MTEB(eng, v2), in the leaderboard's order.
CATEGORIES = ("Classification", "Clustering", "PairClassification", "Reranking", "Retrieval", "STS", "Summarization")


def _abs_encoder():
    from mteb.models.abs_encoder import AbsEncoder

    return AbsEncoder


class MTEBEncoder(_abs_encoder()):
    """Wrap a :class:`~text2token.Text2TokenModel` (or anything ``from_pretrained`` accepts) for mteb."""

    def __init__(
        self,
        model,
        prompts: dict[str, str] | None = None,
        batch_size: int = 32,
        name: str | None = None,
        reuse_raw: bool = False,
        **load_kwargs,
    ):
        from mteb.models import ModelMeta

        self.model = (
            model if isinstance(model, Text2TokenModel) else Text2TokenModel.from_pretrained(model, **load_kwargs)
        )
        self.batch_size = batch_size
        # reuse_raw: keep every text's raw pooled vector, so scoring the same model under several isotropy
        # corrections (model.set_correction) encodes each text once; the correction is applied on every call
        self.raw_vectors: dict[str, np.ndarray] | None = {} if reuse_raw else None
        self.model_prompts = dict(prompts or {})
        if self.model_prompts:
            import logging
            import warnings

            logging.getLogger("mteb.models.abs_encoder").setLevel(logging.ERROR)  # the error below says it once
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    self.validate_task_to_prompt_name(self.model_prompts)
                except KeyError:
                    raise Text2TokenError(
                        f"prompt keys must be MTEB task names, task types (e.g. STS, Retrieval), 'query' or 'document', "
                        f"optionally joined as 'Name-query'; got {sorted(self.model_prompts)}"
                    ) from None
        label = name or _meta_name(self.model)
        self.mteb_model_meta = ModelMeta(
            loader=None,
            name=label,
            revision=self.revision(),
            release_date=None,
            languages=None,
            n_parameters=sum(p.numel() for p in self.model.backbone.parameters()),
            memory_usage_mb=None,
            max_tokens=self.model.max_length,
            embed_dim=self.model.backbone.config.hidden_size,
            license=None,
            open_weights=True,
            public_training_code=None,
            public_training_data=None,
            framework=["PyTorch"],
            similarity_fn_name="cosine",
            use_instructions=bool(self.model_prompts),
            training_datasets=None,
            model_type=["dense"],
        )

    def revision(self) -> str:
        """Identifies exactly what produces the embeddings (weights and settings), so that mteb's result
        cache never serves results of another model saved at the same path."""
        import hashlib
        import json

        m = self.model
        key = json.dumps(
            [
                model_fingerprint(m.backbone),
                m.pooling,
                m.attention,
                m.template,
                m.max_length,
                sorted(self.model_prompts.items()),
                *([m.correction_id] if m.correction_id else []),  # a folder without one keeps its old revision
            ]
        )
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        prompt_name = self.get_prompt_name(task_metadata, prompt_type) if self.model_prompts else None
        if prompt_name is not None:
            prompt = self.model_prompts[prompt_name]
            texts = [prompt + t for t in texts]
        if self.raw_vectors is None:
            return self.model.encode(texts, batch_size=self.batch_size, show_progress_bar=False)
        missing = list(dict.fromkeys(t for t in texts if t not in self.raw_vectors))
        if missing:
            raw = self.model.encode(missing, batch_size=self.batch_size, show_progress_bar=False, postprocess=False)
            self.raw_vectors.update(zip(missing, raw))
        raw = torch.from_numpy(np.stack([self.raw_vectors[t] for t in texts]))
        return self.model.postprocess(raw).numpy()


def _meta_name(model) -> str:
    source = str(model.provenance.get("backbone") or model.backbone.config.name_or_path or "local/model")
    name = source.rstrip("/").replace(os.sep, "/")
    parts = [p for p in name.split("/") if p]
    return "/".join(parts[-2:]) if len(parts) >= 2 else f"text2token/{parts[-1] if parts else 'model'}"


def resolve_tasks(benchmark: str | None = None, task_names: list[str] | None = None) -> list:
    """mteb tasks from a benchmark name (e.g. ``"MTEB(eng, v2)"``) or task names; unknown names are a
    clear error listing close matches."""
    import mteb

    if benchmark:
        names = [b.name for b in mteb.get_benchmarks()]
        if benchmark not in names:
            close = difflib.get_close_matches(benchmark, names, n=5, cutoff=0.4)
            raise Text2TokenError(
                f"unknown MTEB benchmark '{benchmark}'" + (f"; close matches: {', '.join(close)}" if close else "")
            )
        return list(mteb.get_benchmark(benchmark).tasks)
    known = sorted({t.metadata.name for t in mteb.get_tasks(exclude_superseded=False)})
    bad = [n for n in task_names or [] if n not in known]
    if bad:
        hints = "; ".join(
            f"'{n}'"
            + (f" (close: {', '.join(c)})" if (c := difflib.get_close_matches(n, known, n=3, cutoff=0.6)) else "")
            for n in bad
        )
        raise Text2TokenError(f"unknown MTEB task(s): {hints}")
    return list(mteb.get_tasks(tasks=task_names, exclude_superseded=False))


def run_mteb(
    encoder: MTEBEncoder, tasks: list, cache_dir: str | os.PathLike | None = None, show_progress_bar: bool = True
) -> dict:
    """Run ``mteb.evaluate`` (results cached under ``cache_dir``); return
    ``{"tasks": {name: {"type", "main_score"}}, "categories": {type: mean}, "mean"}`` with 0–100 scores."""
    import mteb
    from mteb.cache import ResultCache

    cache = ResultCache(cache_path=Path(cache_dir)) if cache_dir is not None else None
    result = mteb.evaluate(encoder, tasks, cache=cache, show_progress_bar=show_progress_bar)
    by_name = {t.metadata.name: t for t in tasks}
    out: dict = {}
    for task_result in result.task_results:
        meta = by_name[task_result.task_name].metadata
        out[task_result.task_name] = {"type": meta.type, "main_score": round(100 * float(task_result.get_score()), 2)}
    categories: dict[str, list[float]] = {}
    for info in out.values():
        categories.setdefault(info["type"], []).append(info["main_score"])
    cat_means = {k: round(float(np.mean(v)), 2) for k, v in categories.items()}
    return {
        "tasks": out,
        "categories": cat_means,
        "mean": round(float(np.mean([v["main_score"] for v in out.values()])), 2) if out else None,
        "mean_of_categories": round(float(np.mean(list(cat_means.values()))), 2) if cat_means else None,
    }


def format_mteb_table(result: dict) -> str:
    """Markdown: per task, then per category (MTEB(eng, v2)'s task types), then the means."""
    lines = ["| task | type | main score |", "|---|---|---|"]
    lines += [
        f"| {name} | {info['type']} | {info['main_score']:.2f} |" for name, info in sorted(result["tasks"].items())
    ]
    lines += ["", "| category | mean |", "|---|---|"]
    order = [c for c in CATEGORIES if c in result["categories"]] + sorted(set(result["categories"]) - set(CATEGORIES))
    lines += [f"| {c} | {result['categories'][c]:.2f} |" for c in order]
    lines += [
        f"| **mean over tasks** | **{result['mean']:.2f}** |",
        f"| **mean over categories** | **{result['mean_of_categories']:.2f}** |",
    ]
    return "\n".join(lines)

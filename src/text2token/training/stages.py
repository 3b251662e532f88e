"""Training stages. A stage knows its folder, steps and learning rate, whether it has already
finished (checked before anything is read), how to prepare its examples and targets (corpus,
data-driven targets, the corpus prior, precomputed model-derived targets — cached by fingerprint),
and which objective it optimises. The trainer runs any stage the same way.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from ..backbone import cache_dir
from ..cache import CacheMismatch, load_cached, save_cached
from ..errors import Text2TokenError
from ..objectives import MNTP, Combined, Objective, SimCSE, TokenKL, mask_token_id
from ..recipes import STAGES as STAGE_INFO
from ..recipes import TEXT2TOKEN_STAGES, recipe
from ..targets import DataDrivenTargetBuilder, SparseTargets
from ..targets.model_derived import FrozenModelTargets, corpus_prior, precompute_top_k_targets
from .batches import Collator
from .config import RunConfig
from .corpus import corpus_path, read_corpus, texts_digest

logger = logging.getLogger(__name__)


class Stage:
    """Base class; subclasses set ``key`` and implement ``prepare`` and ``base_objective``."""

    key: str = ""
    seed_offset: int = 0  # added to training.seed for this stage's LoRA init, dropout and batch order

    def __init__(self, cfg: RunConfig, run_dir: Path):
        self.cfg = cfg
        self.info = STAGE_INFO[self.key]
        self.dir = Path(run_dir) / self.info.folder

    # ---- what the trainer asks of every stage
    @property
    def section(self):
        """The config section holding this stage's steps and lr."""
        return getattr(self.cfg, self.info.section)

    @property
    def steps(self) -> int:
        return self.section.steps

    @property
    def lr(self) -> float:
        return self.section.lr

    @property
    def seed(self) -> int:
        return self.cfg.training.seed + self.seed_offset

    base_title: str = ""

    @property
    def title(self) -> str:
        """For progress bars and messages, e.g. "stage 1 (data-driven)" (+ the SimCSE term with ``combined``)."""
        if self._adds_simcse_term():
            return f"{self.base_title} + {self.cfg.combined.simcse_weight:g}×SimCSE"
        return self.base_title

    @property
    def final_adapter(self) -> Path:
        return self.dir / "adapter_final.safetensors"

    def finished(self) -> bool:
        """True if this stage's final adapter exists for exactly the configured number of steps."""
        try:
            done = json.loads((self.dir / "summary.json").read_text())["steps"]
        except (OSError, ValueError, KeyError):
            return False
        return self.final_adapter.is_file() and done == self.steps

    def prepare(self, model, accelerator, frozen_fp: str, show_progress_bar: bool) -> tuple[Collator, dict, dict]:
        """Read this stage's texts and build its targets: ``(collator, corpus report, targets report)``."""
        raise NotImplementedError

    def base_objective(self, peft_model, accelerator) -> Objective:
        raise NotImplementedError

    def objective(self, peft_model, accelerator) -> Objective:
        """The stage's objective; with ``objective: combined``, its token KL plus a weighted SimCSE term."""
        base = self.base_objective(peft_model, accelerator)
        if not self._adds_simcse_term():
            return base
        c, s = self.cfg.combined, self.cfg.simcse
        simcse = SimCSE(s.temperature, s.dropout, gather_negatives=accelerator.num_processes > 1, center=s.center)
        return Combined([(base, c.token_weight), (simcse, c.simcse_weight)])

    # ---- helpers
    def _adds_simcse_term(self) -> bool:
        """The recipe adds a SimCSE term to each Text2Token stage (``objective: combined``)."""
        return recipe(self.cfg.objective).simcse_term and self.key in TEXT2TOKEN_STAGES

    def _read_texts(self, train_file: str | None, seed: int, limit: int | None) -> tuple[list[str], dict]:
        d = self.cfg.data
        return read_corpus(corpus_path(train_file), d.field, seed, limit, d.errors)

    def _plain_texts(self, model, report: dict) -> tuple[Collator, dict, dict]:
        """``prepare`` of a stage without targets: the corpus's texts as examples, and ``report`` with their count."""
        cfg = self.cfg
        texts, corpus_info = self._read_texts(cfg.data.train_file, cfg.training.seed, cfg.data.max_texts)
        return Collator(model, texts, np.arange(len(texts))), corpus_info, {**report, "texts": len(texts)}


class DataDrivenStage(Stage):
    """Stage 1: each text's target is uniform over its own content tokens (sparse, cached)."""

    key = "data"
    base_title = "stage 1 (data-driven)"

    def prepare(self, model, accelerator, frozen_fp, show_progress_bar):

        cfg = self.cfg
        texts, corpus_info = self._read_texts(cfg.data.train_file, cfg.training.seed, cfg.data.max_texts)
        builder = DataDrivenTargetBuilder(
            model.tokenizer, max_length=cfg.data.target_max_length, weighting=cfg.stage1.weighting
        )
        fingerprint = {
            **builder.fingerprint(),
            "corpus": corpus_info["sha256_16"],
            "seed": cfg.training.seed,
            "max_texts": cfg.data.max_texts,
        }
        targets_file = self.dir / "targets.safetensors"
        if targets_file.is_file():
            targets = SparseTargets.load(targets_file, expect_fingerprint=fingerprint)  # a foreign cache: error
            report = {"texts": len(texts), "kept": len(targets), "skipped_no_content": len(texts) - len(targets)}
        else:
            num_proc = cfg.data.num_proc or (min(os.cpu_count() or 1, 8) if len(texts) > 50_000 else 1)
            targets, rep = builder.build(texts, show_progress_bar=show_progress_bar, num_proc=num_proc)
            targets.fingerprint = fingerprint
            report = rep.as_dict()
            if accelerator.is_main_process:
                targets.save(targets_file)
        return Collator(model, texts, targets.text_index, targets), corpus_info, report

    def base_objective(self, peft_model, accelerator):
        return TokenKL()


class ModelDerivedStage(Stage):
    """Stage 2: targets from the frozen stage-1 model, ``q = softmax(r/τ)`` against the corpus prior —
    exact on the fly (default) or precomputed top-k."""

    key = "model"
    seed_offset = 1

    @property
    def base_title(self) -> str:
        return f"stage 2 (model-derived, tau={self.cfg.stage2.tau:g})"

    def prepare(self, model, accelerator, frozen_fp, show_progress_bar):
        cfg, s2 = self.cfg, self.cfg.stage2
        texts, corpus_info = self._read_texts(
            s2.train_file or cfg.data.train_file,
            cfg.training.seed + 1,
            s2.max_texts or s2.steps * cfg.training.batch_size,
        )
        fingerprint = {
            "model": frozen_fp,
            "texts_sha256_16": texts_digest(texts),
            "texts": len(texts),
            "pooling": model.pooling,
            "attention": model.attention,
            "template": model.template,
            "max_length": model.max_length,  # and the precision the frozen network computes in:
            "dtype": str(next(model.backbone.parameters()).dtype),
        }
        self.prior = _cached_corpus_prior(
            model,
            texts,
            fingerprint,
            self.dir / "prior.safetensors",
            accelerator,
            cfg.training.batch_size,
            show_progress_bar,
        ).to(accelerator.device)
        targets, report = None, {}
        if s2.targets == "precomputed":
            fp = {**fingerprint, "tau": s2.tau, "top_k": s2.top_k}
            targets, report = _cached_top_k_targets(
                model, texts, self.prior, fp, self.dir / "targets.safetensors", cfg, accelerator, show_progress_bar
            )
        report.update(tau=s2.tau, mode=s2.targets)
        return Collator(model, texts, np.arange(len(texts)), targets), corpus_info, report

    def base_objective(self, peft_model, accelerator):

        if self.cfg.stage2.targets == "precomputed":
            return TokenKL()
        return TokenKL(FrozenModelTargets(peft_model, self.prior, self.cfg.stage2.tau, autocast=accelerator.autocast))


class SimCSEStage(Stage):
    """The LLM2Vec-style unsupervised SimCSE baseline as one stage."""

    key = "simcse"

    @property
    def base_title(self) -> str:
        return f"SimCSE (dropout {self.cfg.simcse.dropout:g})"

    def prepare(self, model, accelerator, frozen_fp, show_progress_bar):
        s = self.cfg.simcse
        return self._plain_texts(
            model,
            {"objective": "simcse", "attention_dropout": s.dropout, "temperature": s.temperature, "center": s.center},
        )

    def base_objective(self, peft_model, accelerator):
        s = self.cfg.simcse
        return SimCSE(s.temperature, s.dropout, gather_negatives=accelerator.num_processes > 1, center=s.center)


class MNTPStage(Stage):
    """LLM2Vec's masked next-token prediction (the first stage of ``objective: llm2vec``)."""

    key = "mntp"
    seed_offset = 2

    @property
    def base_title(self) -> str:
        return f"MNTP (mask {self.cfg.mntp.mask_ratio:g})"

    def prepare(self, model, accelerator, frozen_fp, show_progress_bar):

        self.mask_id = mask_token_id(model.tokenizer)
        return self._plain_texts(
            model,
            {
                "objective": "mntp",
                "mask_ratio": self.cfg.mntp.mask_ratio,
                "mask_token": model.tokenizer.convert_ids_to_tokens(self.mask_id),
            },
        )

    def base_objective(self, peft_model, accelerator):

        return MNTP(self.cfg.mntp.mask_ratio, self.mask_id)


STAGE_CLASSES = {cls.key: cls for cls in (DataDrivenStage, ModelDerivedStage, MNTPStage, SimCSEStage)}


def build_stages(cfg: RunConfig, run_dir: Path) -> list[Stage]:
    """The stages ``cfg`` runs, in order."""
    return [STAGE_CLASSES[key](cfg, run_dir) for key in cfg.run_stages()]


# ---- cached intermediate results of stage 2


def load_prior(path: Path, fingerprint: dict) -> torch.Tensor | None:
    """The cached corpus prior at ``path`` if it was computed for exactly ``fingerprint``, else None."""
    if not path.is_file():
        return None
    try:
        return torch.from_numpy(load_cached(path, fingerprint, what="prior")["prior"])
    except CacheMismatch:
        logger.warning("%s was computed for another model/corpus/settings; recomputing", path)
        return None


def save_prior(path: Path, prior: torch.Tensor, fingerprint: dict) -> None:
    save_cached(path, {"prior": prior.detach().float().cpu().numpy()}, fingerprint)


def _cached_corpus_prior(model, texts, fingerprint, run_file: Path, accelerator, batch_size, show_progress_bar):
    """The corpus prior from the run folder, else from ``$TEXT2TOKEN_HOME/priors`` (shared across runs, e.g. a
    τ sweep), else computed (sharded across processes) and saved to both."""
    import hashlib

    main = accelerator.is_main_process
    key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:24]
    shared_file = cache_dir() / "priors" / f"prior-{key}.safetensors"
    prior = load_prior(run_file, fingerprint)
    if prior is None and (prior := load_prior(shared_file, fingerprint)) is not None and main:
        save_prior(run_file, prior, fingerprint)
    if prior is None:
        model.eval()
        shard = texts[accelerator.process_index :: accelerator.num_processes]
        prior = corpus_prior(
            model, shard, batch_size=batch_size, accelerator=accelerator, show_progress_bar=show_progress_bar
        )
        if main:
            save_prior(run_file, prior, fingerprint)
            save_prior(shared_file, prior, fingerprint)
    return prior


def _cached_top_k_targets(model, texts, prior, fingerprint, path: Path, cfg, accelerator, show_progress_bar):

    s2 = cfg.stage2
    if path.is_file():
        try:
            targets = SparseTargets.load(path, expect_fingerprint=fingerprint)
            return targets, {"texts": len(texts), "top_k": s2.top_k, "mass_kept_mean": None}
        except Text2TokenError:
            logger.warning("%s was built for other settings; rebuilding", path)
    targets, report = precompute_top_k_targets(
        model, texts, prior, s2.tau, s2.top_k, cfg.training.batch_size, fingerprint, show_progress_bar
    )
    if accelerator.is_main_process:
        targets.save(path)
    return targets, report

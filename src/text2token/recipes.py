"""The training recipes (``objective:`` in a config, ``train --objective``), one entry each, and the stages they run.

A recipe says which stages it trains in order, whether each Text2Token stage also optimises a SimCSE term, and how
the model card and ``--help`` describe it. A stage says its run sub-folder, the config section that holds its steps
and learning rate, and its label. Everything that needs to know about recipes reads this module: the config
(``RunConfig.run_stages``, validation, which settings a ``--resume`` may change), the trainer's stages, the run
report, the model card and the CLI. Adding a recipe is one entry in :data:`RECIPES` (plus its stage class in
:mod:`text2token.training.stages` if it brings a new kind of stage).

Torch-free, so configs and the CLI's parser use it without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from .modes import Objective


@dataclass(frozen=True)
class StageInfo:
    key: str  # the name in a config's ``stages`` and in RunConfig.run_stages()
    folder: str  # the stage's sub-folder of a run folder (checkpoints, log, adapter)
    section: str  # the config section that holds its ``steps`` and ``lr``
    label: str  # how the model card and the report name it

    @property
    def steps_key(self) -> str:
        return f"{self.section}.steps"


STAGES: dict[str, StageInfo] = {
    s.key: s
    for s in (
        StageInfo("data", "stage1-data", "stage1", "stage 1, data-driven targets"),
        StageInfo("model", "stage2-model", "stage2", "stage 2, model-derived targets"),
        StageInfo("mntp", "mntp", "mntp", "masked next-token prediction (MNTP)"),
        StageInfo("simcse", "simcse", "simcse", "SimCSE"),
    )
}
TEXT2TOKEN_STAGES = ("data", "model")  # the stages a config's ``stages`` list may name, in this order


@dataclass(frozen=True)
class Recipe:
    name: Objective
    summary: str  # one sentence: what it trains (CLI help, model card)
    fixed_stages: tuple[str, ...] | None = None  # its stages; None: the config's ``stages`` (Text2Token's data/model)
    simcse_term: bool = (
        False  # each Text2Token stage optimises combined.token_weight·KL + combined.simcse_weight·SimCSE
    )
    baseline: bool = False  # a comparison recipe, not the Text2Token method

    def stages(self, configured: list[str] | tuple[str, ...]) -> list[str]:
        """The stage keys this recipe trains, in order, given the config's ``stages``."""
        return list(self.fixed_stages if self.fixed_stages is not None else configured)


RECIPES: dict[str, Recipe] = {
    r.name.value: r
    for r in (
        Recipe(
            Objective.TEXT2TOKEN, "Text2Token: KL(q‖softmax(lm_head(pooled))) against the configured stages' targets"
        ),
        Recipe(
            Objective.SIMCSE,
            "SimCSE, LLM2Vec's unsupervised contrastive step, with the same LoRA, pooling, attention and data",
            fixed_stages=("simcse",),
            baseline=True,
        ),
        Recipe(
            Objective.COMBINED,
            "Text2Token plus SimCSE: each stage optimises combined.token_weight·KL + combined.simcse_weight·SimCSE",
            simcse_term=True,
        ),
        Recipe(
            Objective.LLM2VEC,
            "LLM2Vec's unsupervised recipe: masked next-token prediction (MNTP), merged, then SimCSE",
            fixed_stages=("mntp", "simcse"),
            baseline=True,
        ),
    )
}

# Settings a resumed run may change besides every stage's steps: logging and checkpoint cadence, the run folder, the
# description and the number of target-building processes. (A stage trained further continues from its checkpoint;
# a later stage whose base changed is retrained.)
RESUME_MAY_CHANGE = (
    "output_dir",
    "description",
    "training.save_every",
    "training.keep_checkpoints",
    "training.log_every",
    "training.tensorboard",
    "data.num_proc",
    "isotropy.enabled",  # the isotropy correction is fitted after the last stage, so it may change on a resume
    "isotropy.directions",
    "isotropy.texts",
    "isotropy.corpus",
)


def resume_safe_keys() -> tuple[str, ...]:
    """Every setting a ``--resume`` may change: :data:`RESUME_MAY_CHANGE` and each stage's ``steps``."""
    return RESUME_MAY_CHANGE + tuple(s.steps_key for s in STAGES.values())


def recipe(objective: str) -> Recipe:
    """The recipe named ``objective`` (KeyError if unknown; configs validate the name first)."""
    return RECIPES[str(objective)]


def objectives_help() -> str:
    """One line per recipe, for ``--help`` and the docs."""
    return "; ".join(f"{name}: {r.summary}" for name, r in RECIPES.items())

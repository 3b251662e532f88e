"""The bundled evaluation tasks as local mteb 2.x tasks, so that the offline suite is scored by mteb's own
evaluators (no downloads: each task's ``load_data`` hands over the rows already read, subsampled as the suite
asked). What differs per task type — mteb's abstract task, main score, dataset layout, evaluator settings, protocol —
is one entry of :data:`text2token.evaluation.task_types.TASK_TYPES`.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import Text2TokenError
from .task_types import CLASSIFICATION_PROTOCOLS, Task, task_type


def mteb_task(task: Task, classification: str = "mteb"):
    """An mteb task object holding ``task``'s data (as loaded, i.e. already subsampled)."""
    from mteb.abstasks.task_metadata import TaskMetadata

    if classification not in CLASSIFICATION_PROTOCOLS:
        raise Text2TokenError(
            f"classification protocol must be one of {', '.join(CLASSIFICATION_PROTOCOLS)}, got '{classification}'"
        )
    spec = task_type(task.type)
    metadata = TaskMetadata(
        name=task.name,
        type=spec.mteb_type,
        main_score=spec.main_score,
        description=f"bundled text2token task {task.name}",
        reference=None,
        dataset={"path": f"text2token/{task.name}", "revision": "bundled"},
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        date=None,
        domains=None,
        task_subtypes=None,
        license=None,
        annotations_creators=None,
        dialect=None,
        sample_creation=None,
        bibtex_citation=None,
    )
    module, name = spec.mteb_base.split(":")
    base = getattr(importlib.import_module(module), name)

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        self.dataset = spec.dataset(task)
        self.data_loaded = True

    attrs: dict[str, Any] = {"metadata": metadata, "load_data": load_data, **spec.attrs(task, classification)}
    return type(f"Local{task.name}", (base,), attrs)()


def score(encoder, task: Task, classification: str = "mteb") -> float:
    """``task``'s main score (0–100) for an mteb encoder, computed by mteb's evaluator under the stated protocol."""
    import logging
    import warnings

    import mteb

    local = mteb_task(task, classification)
    logging.getLogger("mteb").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn convergence notes and mteb's notes on unregistered tasks
        result = mteb.evaluate(encoder, [local], cache=None, show_progress_bar=False, co2_tracker=False)
    return 100 * float(result.task_results[0].get_score())

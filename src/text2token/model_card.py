"""The model card (``README.md``) of a saved text2token folder: backbone, method, settings, training
data and steps, and the evaluation table once one is recorded (``text2token eval --card``)."""

from __future__ import annotations

import json
from pathlib import Path

from .layout import MODEL_CONFIG_NAME
from .recipes import RECIPES, STAGES
from .textio import write_atomic, write_json_atomic


def _training_lines(training: dict) -> list[str]:
    cfg = training.get("config", {})
    description = cfg.get("description", "").strip()
    lines = [f"- recipe: {description}"] if description else []
    objective = str(training.get("objective", cfg.get("objective", "text2token")))
    recipe = RECIPES.get(objective)
    stages = training.get("stages") or (recipe.stages(cfg.get("stages", [])) if recipe else cfg.get("stages", []))
    summary = recipe.summary + (" (a baseline)" if recipe.baseline else "") if recipe else objective
    lines.append(f"- objective: `{objective}` — {summary}")
    lines.append("- stages: " + "; then ".join(STAGES[s].label if s in STAGES else s for s in stages))
    if recipe and recipe.simcse_term:
        c = cfg.get("combined", {})
        centred = " (on batch-centred vectors)" if cfg.get("simcse", {}).get("center") else ""
        lines.append(f"- combined per stage: {c.get('token_weight')}×KL + {c.get('simcse_weight')}×SimCSE{centred}")
    for stage in STAGES.values():
        key = f"stage_{stage.key}"
        if key in training:
            st = training[key]
            label = stage.label
            extra = f", τ = {cfg.get('stage2', {}).get('tau')}" if stage.key == "model" else ""
            lines.append(
                f"- {label}: {st.get('steps')} steps, lr {st.get('lr')}{extra}, {st.get('seconds_per_step')} s/step"
            )
    data = cfg.get("data", {})
    t = cfg.get("training", {})
    lora = cfg.get("lora", {})
    lines.append(f"- data: {data.get('train_file') or 'the bundled Brown corpus sentences'}")
    lines.append(
        f"- batch {t.get('batch_size')}, training length {t.get('max_length')} tokens, seed {t.get('seed')}; "
        f"LoRA r={lora.get('r')}, α={lora.get('alpha')} on {', '.join(lora.get('target_modules', []))} (merged)"
    )
    if "seconds" in training:
        lines.append(f"- wall time {training['seconds']} s on {training.get('processes', 1)} process(es)")
    return lines


def _evaluation_lines(evaluation: dict) -> list[str]:
    lines = [
        f"Suite `{evaluation.get('suite')}` (bundled offline tasks, MTEB metric definitions; 0–100):",
        "",
        "| task | type | metric | score |",
        "|---|---|---|---|",
    ]
    for name, info in evaluation.get("tasks", {}).items():
        lines.append(f"| {name} | {info.get('type')} | {info.get('metric', '')} | {info.get('main_score'):.2f} |")
    lines.append(f"| **mean** | | | **{evaluation.get('mean'):.2f}** |")
    return lines


def _isotropy_lines(iso: dict | None) -> list[str]:
    if not iso:
        return []
    return [
        f"- isotropy correction (applied to every vector, `{iso.get('file')}` and the `2_Dense` module): the mean "
        f"vector of {iso.get('texts')} texts of {iso.get('corpus')} (seed {iso.get('seed')}) subtracted, the top "
        f"{iso.get('directions')} principal direction(s) removed; `text2token postprocess` refits or removes it"
    ]


def write_model_card(folder: str | Path, settings: dict, name: str | None = None) -> None:
    folder = Path(folder)
    name = name or folder.name
    backbone = settings.get("provenance", {}).get("backbone", "unknown")
    template = settings.get("template")
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags: [text2token, sentence-transformers, feature-extraction, sentence-similarity]",
        "---",
        "",
        f"# {name}: a Text2Token embedder",
        "",
        f"Backbone `{backbone}`, trained without labels by Text2Token (arXiv 2510.10224): the pooled last hidden "
        "state is pushed through the model's own frozen LM head and LoRA adapters are trained so that this "
        "vocabulary distribution matches target token distributions. Each embedding's top LM-head tokens say "
        "what it means (`text2token explain`).",
        "",
        "## Settings",
        "",
        f"- pooling: `{settings.get('pooling')}`; attention: `{settings.get('attention')}`",
        f"- template: `{template}`" if template else "- template: none",
        f"- max length: {settings.get('max_length')} tokens; text2token {settings.get('text2token_version')}",
        *_isotropy_lines(settings.get("isotropy")),
        "",
    ]
    if "training" in settings:
        lines += ["## Training", "", *_training_lines(settings["training"]), ""]
    lines += ["## Evaluation", ""]
    lines += (
        _evaluation_lines(settings["evaluation"])
        if settings.get("evaluation")
        else ["Not evaluated yet (`text2token eval --model THIS_FOLDER --card` records it here)."]
    )
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        'model = SentenceTransformer("PATH")          # no trust_remote_code needed',
        'emb = model.encode(["A cat sat on the mat."])',
        "",
        "from text2token import Text2TokenModel",
        'model = Text2TokenModel.from_pretrained("PATH")',
        'model.explain(["A cat sat on the mat."], top_k=5)',
        "```",
        "",
    ]
    write_atomic(folder / "README.md", lambda p: p.write_text("\n".join(lines), encoding="utf-8"))


def record_evaluation(folder: str | Path, evaluation: dict) -> None:
    """Store an evaluation result in the folder's settings and regenerate its model card."""
    folder = Path(folder)
    settings = json.loads((folder / MODEL_CONFIG_NAME).read_text(encoding="utf-8"))
    settings["evaluation"] = evaluation
    write_json_atomic(folder / MODEL_CONFIG_NAME, settings)
    write_model_card(folder, settings)

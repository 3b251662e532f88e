"""File and folder names shared across modules (one definition each): a saved model folder and a
training run folder."""

from __future__ import annotations

MODEL_CONFIG_NAME = "text2token_config.json"  # settings of a saved model folder (pooling, template, provenance, ...)
ISOTROPY_FILE = "isotropy.safetensors"  # a saved model folder's isotropy correction (mean, directions), if any
RUN_CONFIG_NAME = "config.yaml"  # the resolved config of a run folder (replay it with --config)
RUN_SUMMARY_NAME = "train_summary.json"
RUN_INFO_NAME = "run_info.json"
# Each training stage's sub-folder of a run folder: text2token.recipes.STAGES.

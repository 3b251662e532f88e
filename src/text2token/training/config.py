"""Run configuration: dataclasses ⇄ YAML, ``section.key=value`` overrides, validation with
messages that name the field."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError
from ..modes import (
    ISOTROPY_DIRECTIONS,
    ISOTROPY_FIT_TEXTS,
    ISOTROPY_MIN_FIT_TEXTS,
    Attention,
    Choice,
    InputErrors,
    MixedPrecision,
    Objective,
    Pooling,
    Scheduler,
    Stage2Targets,
    TargetWeighting,
)
from ..recipes import STAGES, TEXT2TOKEN_STAGES, recipe, resume_safe_keys

logger = logging.getLogger(__name__)
# The settings with a fixed set of values, and those values (validation, the CLI's choices and the configuration
# reference's test read them here).
CHOICES: dict[str, type[Choice]] = {
    "objective": Objective,
    "model.pooling": Pooling,
    "model.attention": Attention,
    "data.errors": InputErrors,
    "training.scheduler": Scheduler,
    "training.mixed_precision": MixedPrecision,
    "stage1.weighting": TargetWeighting,
    "stage2.targets": Stage2Targets,
}
# Keys that moved into each stage's own section: old key -> the sections that now hold it.
MOVED_KEYS = {"training.steps": ("stage1.steps", "simcse.steps"), "training.lr": ("stage1.lr", "simcse.lr")}


@dataclass
class ModelConfig:
    name: str = "default"  # "default" (= smollm2-135m), "gemma3-270m", a Hugging Face id or folder, or a .gguf file
    pooling: str = "last"  # mean | last | weighted_mean
    attention: str = "causal"  # causal | bidirectional
    template: str | None = "auto"  # "auto": PromptEOL for last pooling, none otherwise; null: none
    max_length: int | None = None  # tokens per text when the saved model encodes (template included); null = 512,
    #                                capped by the backbone's context


@dataclass
class DataConfig:
    train_file: str | None = None  # .txt (one text per line) or .jsonl, or bundled:brown / bundled:wiki; null = Brown
    field: str = "text"  # JSONL field
    max_texts: int | None = None  # use at most this many texts (after shuffling)
    target_max_length: int = 128  # tokens considered when building data-driven targets
    num_proc: int = 0  # processes building data-driven targets; 0 = auto (all cores for corpora over 50k texts)
    errors: str = "strict"  # invalid UTF-8 in the corpus: strict (error naming the line) | replace (U+FFFD, counted)


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class TrainingConfig:
    """Settings every stage shares; each stage's own steps and learning rate live in its section."""

    batch_size: int = 32  # global batch (split across processes)
    max_length: int = 64  # tokens per training text (template included)
    tokens_per_step: int = 0  # > 0: packed batches instead of batch_size: texts up to this many tokens per step
    pack_length: int = 0  # tokens per packed row (several texts each); 0 = 2 × max_length
    scheduler: str = "constant"  # constant | linear | cosine (after warm-up)
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 0  # JSONL log interval; 0 = auto: every step on a CPU, every 25 on a GPU (reading values syncs)
    save_every: int = 10  # checkpoint every N steps (0: only at the end)
    keep_checkpoints: int = 2
    mixed_precision: str = "auto"  # auto (bf16 on GPU, none on CPU) | no | bf16 | fp16
    gradient_checkpointing: bool = False
    tensorboard: bool = False  # also log to RUN/tensorboard (needs the tensorboard package)
    compile: bool = False  # torch.compile the backbone, batches in a few fixed shapes (GPU; pays off on long runs)


@dataclass
class Stage1Config:
    """Stage 1: data-driven targets (the text's own content tokens)."""

    steps: int = 20  # short: a longer stage 1 hurt classification on SmolLM2, see docs/studies/index.md
    lr: float = 5e-5
    weighting: str = "uniform"  # the target over a text's content tokens: uniform | idf (over the training texts)


@dataclass
class Stage2Config:
    """Stage 2: targets derived from the frozen stage-1 model (ratio to the corpus prior, temperature τ)."""

    steps: int = 30
    lr: float = 5e-5
    tau: float = 0.01  # q = softmax(r / tau); small = near one-hot on the top-ratio tokens
    train_file: str | None = None  # null = the stage-1 corpus (reshuffled with seed + 1)
    max_texts: int | None = None  # stage-2 training set (and prior set); null = steps × batch_size texts
    targets: str = "on_the_fly"  # on_the_fly (exact) | precomputed (top-k sparse store)
    top_k: int = 64  # kept per text when precomputed; the mass kept is reported


@dataclass
class SimCSEConfig:
    """The LLM2Vec-style unsupervised SimCSE baseline (``objective: simcse``)."""

    steps: int = 20
    lr: float = 5e-5
    dropout: float = (
        0.3  # attention dropout of the backbone while training (LLM2Vec: 0.3); LoRA dropout is lora.dropout
    )
    temperature: float = 0.05  # cosine similarities are divided by this
    center: bool = False  # cosines of the vectors minus the batch mean (what the isotropy correction leaves)


@dataclass
class MNTPConfig:
    """Masked next-token prediction, the first stage of ``objective: llm2vec`` (then SimCSE on top of it)."""

    steps: int = 20
    lr: float = 5e-5
    mask_ratio: float = 0.2  # LLM2Vec: 20% of the tokens


@dataclass
class CombinedConfig:
    """``objective: combined``: each Text2Token stage optimises token_weight·KL + simcse_weight·SimCSE
    (two dropout views with simcse.dropout, simcse.temperature)."""

    token_weight: float = 1.0
    simcse_weight: float = 0.1


@dataclass
class IsotropyConfig:
    """The isotropy correction fitted after the last stage and saved in the model folder (text2token.isotropy):
    the mean raw vector of a seeded sample of texts subtracted, then the top principal directions projected out."""

    enabled: bool = True
    directions: int = ISOTROPY_DIRECTIONS  # principal directions removed after the mean (0: the mean only)
    texts: int = ISOTROPY_FIT_TEXTS  # texts of the seeded sample it is fitted on (training.seed)
    corpus: str | None = None  # null = the training corpus (data.train_file); a path or bundled:brown / bundled:wiki


@dataclass
class RunConfig:
    output_dir: str = "runs/demo"
    description: str = ""  # what this recipe is and why (free text; shown on the saved model's card)
    objective: str = (
        "text2token"  # text2token (stages below) | simcse (the contrastive baseline) | combined (KL + SimCSE)
    )
    #                                | llm2vec (MNTP then SimCSE: LLM2Vec's unsupervised recipe)
    stages: list[str] = field(default_factory=lambda: ["data", "model"])  # data (stage 1), model (stage 2), in order
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    simcse: SimCSEConfig = field(default_factory=SimCSEConfig)
    mntp: MNTPConfig = field(default_factory=MNTPConfig)
    combined: CombinedConfig = field(default_factory=CombinedConfig)
    isotropy: IsotropyConfig = field(default_factory=IsotropyConfig)

    def run_stages(self) -> list[str]:
        """The stages train() runs, in order, as the recipe (:data:`text2token.recipes.RECIPES`) says: ``stages``
        for Text2Token and combined, ``simcse`` for the baseline, ``mntp`` then ``simcse`` for LLM2Vec's recipe."""
        return recipe(self.objective).stages(self.stages)

    def get(self, key: str):
        """A setting by its dotted name, e.g. ``cfg.get("model.pooling")``."""
        value = self
        for part in key.split("."):
            value = getattr(value, part)
        return value

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        from ..textio import write_atomic

        write_atomic(path, lambda p: p.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8"))

    def validate(self) -> RunConfig:
        m, d, lora, t, s2 = self.model, self.data, self.lora, self.training, self.stage2
        _check(
            bool(self.stages)
            and all(x in TEXT2TOKEN_STAGES for x in self.stages)
            and len(set(self.stages)) == len(self.stages),
            "stages",
            f"must be a list of distinct stages from: {', '.join(TEXT2TOKEN_STAGES)} (got {self.stages})",
        )
        _check(
            self.stages == [s for s in TEXT2TOKEN_STAGES if s in self.stages],
            "stages",
            f"must run in the order {', '.join(TEXT2TOKEN_STAGES)}",
        )
        for key, names in CHOICES.items():  # every setting with a fixed set of values
            _choice(self.get(key), names, key)
        _check(0 < self.mntp.mask_ratio < 1, "mntp.mask_ratio", f"must be in (0, 1), got {self.mntp.mask_ratio}")
        for section in (s.section for s in STAGES.values()):
            _check(
                getattr(self, section).steps > 0, f"{section}.steps", f"must be > 0, got {getattr(self, section).steps}"
            )
            _check(getattr(self, section).lr > 0, f"{section}.lr", f"must be > 0, got {getattr(self, section).lr}")
        c = self.combined
        _check(c.token_weight >= 0, "combined.token_weight", f"must be >= 0, got {c.token_weight}")
        _check(c.simcse_weight >= 0, "combined.simcse_weight", f"must be >= 0, got {c.simcse_weight}")
        _check(c.token_weight + c.simcse_weight > 0, "combined", "token_weight and simcse_weight cannot both be 0")
        _check(0 <= self.simcse.dropout < 1, "simcse.dropout", f"must be in [0, 1), got {self.simcse.dropout}")
        _check(self.simcse.temperature > 0, "simcse.temperature", f"must be > 0, got {self.simcse.temperature}")
        _check(s2.tau > 0, "stage2.tau", f"must be > 0, got {s2.tau}")
        _check(s2.max_texts is None or s2.max_texts > 0, "stage2.max_texts", f"must be > 0, got {s2.max_texts}")
        _check(s2.top_k > 0, "stage2.top_k", f"must be > 0, got {s2.top_k}")
        _check(
            m.template is None or m.template == "auto" or "{text}" in m.template,
            "model.template",
            "must contain '{text}', or be 'auto' or null",
        )
        _check(
            m.max_length is None or m.max_length >= 8, "model.max_length", f"must be null or >= 8, got {m.max_length}"
        )
        _check(d.max_texts is None or d.max_texts > 0, "data.max_texts", f"must be > 0, got {d.max_texts}")
        from .corpus import BUNDLED, BUNDLED_PREFIX

        iso = self.isotropy
        _check(iso.directions >= 0, "isotropy.directions", f"must be >= 0 (0: the mean only), got {iso.directions}")
        _check(
            iso.texts >= ISOTROPY_MIN_FIT_TEXTS,
            "isotropy.texts",
            f"must be >= {ISOTROPY_MIN_FIT_TEXTS} (a correction fitted on fewer is too noisy), got {iso.texts}",
        )
        for key, name in (
            ("data.train_file", d.train_file),
            ("stage2.train_file", s2.train_file),
            ("isotropy.corpus", iso.corpus),
        ):
            _check(
                not (name or "").startswith(BUNDLED_PREFIX) or name[len(BUNDLED_PREFIX) :] in BUNDLED,
                key,
                f"names no bundled corpus (bundled: {', '.join(BUNDLED_PREFIX + n for n in BUNDLED)}), got '{name}'",
            )
        _check(d.target_max_length > 0, "data.target_max_length", "must be > 0")
        _check(d.num_proc >= 0, "data.num_proc", f"must be >= 0 (0 = auto), got {d.num_proc}")
        _check(lora.r > 0, "lora.r", f"must be > 0, got {lora.r}")
        _check(lora.alpha > 0, "lora.alpha", f"must be > 0, got {lora.alpha}")
        _check(0 <= lora.dropout < 1, "lora.dropout", f"must be in [0, 1), got {lora.dropout}")
        _check(bool(lora.target_modules), "lora.target_modules", "must name at least one module")
        _check(t.max_length >= 8, "training.max_length", f"must be >= 8, got {t.max_length}")
        _check(t.batch_size > 0, "training.batch_size", f"must be > 0, got {t.batch_size}")
        _check(
            t.tokens_per_step >= 0,
            "training.tokens_per_step",
            f"must be >= 0 (0: batch_size texts), got {t.tokens_per_step}",
        )
        _check(
            t.pack_length == 0 or t.pack_length >= t.max_length,
            "training.pack_length",
            f"must be 0 (2 × max_length) or >= training.max_length ({t.max_length}), got {t.pack_length}",
        )
        _check(
            t.tokens_per_step == 0 or t.tokens_per_step >= t.max_length,
            "training.tokens_per_step",
            f"must hold at least one text of training.max_length ({t.max_length}) tokens, got {t.tokens_per_step}",
        )
        _check(t.warmup_steps >= 0, "training.warmup_steps", "must be >= 0")
        _check(t.weight_decay >= 0, "training.weight_decay", "must be >= 0")
        _check(t.grad_clip >= 0, "training.grad_clip", "must be >= 0 (0 disables clipping)")
        _check(t.log_every >= 0, "training.log_every", "must be >= 0 (0: auto)")
        _check(t.save_every >= 0, "training.save_every", "must be >= 0")
        _check(t.keep_checkpoints >= 1, "training.keep_checkpoints", "must be >= 1")
        return self


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config field '{key}' {message}")


def _choice(value, names: type[Choice], key: str) -> None:
    _check(names.has(value), key, f"must be {names.listed()}, got '{value}'")


def _build(cls, values: dict, prefix: str, source: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: '{prefix or 'top level'}' must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown config key '{prefix}{key}'{hint}; valid keys: {', '.join(fields)}")
        f = fields[key]
        if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
            kwargs[key] = _build(f.default_factory, value or {}, f"{prefix}{key}.", source)
        else:
            kwargs[key] = _coerce(value, f, f"{prefix}{key}", source)
    return cls(**kwargs)


def _coerce(value, f: dataclasses.Field, key: str, source: str):
    """Check ``value`` against the field's annotation ("int", "float | None", "list[str]", ...)."""
    kinds = [k.strip() for k in str(f.type).split("|")]
    if value is None:
        if "None" in kinds:
            return None
        raise ConfigError(f"{source}: config field '{key}' cannot be null")
    if "bool" in kinds:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: config field '{key}' must be true or false, got {value!r}")
    if "int" in kinds:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: config field '{key}' must be an integer, got {value!r}")
    if "float" in kinds:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{source}: config field '{key}' must be a number, got {value!r}")
    if "list[str]" in kinds:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ConfigError(f"{source}: config field '{key}' must be a list of strings, got {value!r}")
    if isinstance(value, bool):  # YAML 1.1 reads a bare no/yes/off/on as a boolean: mixed_precision=no means "no"
        value = "yes" if value else "no"
    if isinstance(value, str):
        return value
    raise ConfigError(f"{source}: config field '{key}' must be a string, got {value!r}")


def _set_dotted(tree: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
    node[parts[-1]] = value


def _moved(key: str, where: str) -> tuple[str, ...]:
    """The keys an old key now means (with a deprecation warning), or the key itself."""
    if key not in MOVED_KEYS:
        return (key,)
    new = MOVED_KEYS[key]
    logger.warning(
        "%s: config field '%s' is deprecated, each stage has its own now: read as %s (Text2Token stage 1 "
        "and SimCSE); write %s instead",
        where,
        key,
        " and ".join(new),
        " or ".join(new),
    )
    return new


def upgrade_moved_keys(tree: dict, source: str) -> dict:
    """Rewrite deprecated keys of a config tree (e.g. an old run's config.yaml) into their new sections.
    An old key next to one of its new keys in the same file is ambiguous: an error naming both."""
    if not isinstance(tree, dict):
        return tree
    for old in MOVED_KEYS:
        section, key = old.split(".")
        if not isinstance(tree.get(section), dict) or key not in tree[section]:
            continue
        value = tree[section].pop(key)
        new_keys = _moved(old, source)
        for new in new_keys:
            new_section, new_key = new.split(".")
            if isinstance(tree.get(new_section), dict) and new_key in tree[new_section]:
                raise ConfigError(f"{source}: both '{old}' (deprecated) and '{new}' are set; keep only '{new}'")
        for new in new_keys:
            _set_dotted(tree, new, value)
    return tree


def parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value (e.g. stage1.steps=20)")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config (or the defaults), apply ``section.key=value`` overrides, validate."""
    tree: dict = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file does not exist")
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: config file is not valid UTF-8") from None
    tree = upgrade_moved_keys(tree, source)
    for item in overrides or []:
        key, value = parse_override(item)
        for new_key in _moved(key, f"override '{item}'"):
            _set_dotted(tree, new_key, value)
    if overrides:
        source = f"{source} + overrides"
    cfg = _build(RunConfig, tree, "", source)
    try:
        return cfg.validate()
    except ConfigError as exc:  # a value out of range: name the file (and overrides) it came from, like the rest
        raise ConfigError(f"{source}: {exc}") from None


def flatten(tree: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_resumable(recorded: RunConfig, wanted: RunConfig, where: str) -> None:
    """Refuse to continue a run recorded with ``recorded`` under ``wanted`` if they differ in anything but
    :func:`text2token.recipes.resume_safe_keys` and added stages: a :class:`ConfigError` naming each differing setting,
    its recorded and its requested value."""
    before, after = flatten(recorded.to_dict()), flatten(wanted.to_dict())
    safe = resume_safe_keys()
    changed = [k for k in after if before.get(k) != after[k] and k not in safe]
    if "stages" in changed and list(after["stages"][: len(before["stages"])]) == list(before["stages"]):
        changed.remove("stages")  # more stages after the recorded ones: the finished ones are kept
    if changed:
        shown = "; ".join(f"{k}: {before.get(k)!r} → {after[k]!r}" for k in changed)
        raise ConfigError(
            f"--resume continues {where} as recorded in its config, but these settings differ: {shown}. "
            f"Drop them to resume (only {', '.join(safe[1:])} and added stages may change), "
            "or start a new run with another --output"
        )


def resume_config(
    run_dir: str | os.PathLike, config_path: str | os.PathLike | None = None, overrides: list[str] | None = None
) -> RunConfig:
    """The config of a run being resumed: the run's own ``config.yaml``, with ``overrides`` (and ``config_path``,
    if given) allowed to change only what :func:`check_resumable` allows."""
    from ..layout import RUN_CONFIG_NAME

    saved_file = Path(run_dir) / RUN_CONFIG_NAME
    wanted = load_config(config_path or saved_file, [*(overrides or []), f"output_dir={run_dir}"])
    check_resumable(load_config(saved_file), wanted, str(run_dir))
    return wanted

"""Training configuration: one dataclass, read from CLI flags, a dict or a TOML file, stored beside the run.

Example:
    >>> from blurkit.train import TrainConfig
    >>> cfg = TrainConfig(regime="strong", epochs=2, image_size=32, limit=2000, out="runs/strong")
    >>> cfg2 = TrainConfig.from_toml("runs/strong/config.toml")   # the stored copy reproduces the run
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from .._io import atomic_write_text  # re-exported: the config writer's atomic write

__all__ = ["TrainConfig", "dump_toml", "atomic_write_text"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("none", "cosine", "step")
AMP_MODES = ("none", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Everything that defines a training run (see ``docs/train.md`` for the full table).

    Units: ``sigma`` values in regimes and ``eval_sigmas`` are in pixels *at* ``reference_size``
    (224, as Jang & Tong); they are multiplied by ``image_size / reference_size`` before blurring.
    ``reference_size = 0`` uses them as pixels of the training images unchanged.
    ``batch_size`` is the global batch per optimizer step (split over ranks and accumulation steps).
    """

    out: str = "runs/blurkit"
    # data
    data: str | None = None               # None/"fashion-mnist", folder, "fashion-mnist:/path", "module:function"
    val_data: str | None = None           # default: the test split of `data`
    image_size: int = 32                  # 0: keep the dataset's own size
    channels: int = 1
    limit: int | None = None
    val_limit: int | None = None
    skip_bad: bool = False
    num_workers: int = 0
    mean: list[float] | None = None       # default: [.449] grey (Jang & Tong), ImageNet RGB stats for 3-ch
    std: list[float] | None = None
    hflip: bool = True
    rotate: float = 0.0                   # max rotation in degrees (Jang & Tong: 10)
    # model
    model: str = "small-cnn"
    blurpool: bool = False
    model_options: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None
    # regime
    regime: str = "standard"
    regime_options: dict[str, Any] = field(default_factory=dict)
    reference_size: int = 224
    truncate: float | None = None         # None: the regime's own (2 Jang & Tong, 4 Yoshihara); eval uses 2
    border: str | None = None             # None: the regime's own ("reflect")
    # optimisation
    epochs: int = 3
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    scheduler: str = "cosine"
    warmup_steps: int = 0
    accumulate: int = 1
    label_smoothing: float = 0.0
    # hardware
    device: str = "auto"
    threads: int = 0                      # torch CPU threads per process (0: torch's default)
    amp: str = "none"
    channels_last: bool | None = None     # default: True on CUDA
    compile: bool = False
    # run control
    seed: int = 0
    eval_sigmas: list[float] = field(default_factory=list)
    eval_every: int = 1
    eval_batch_size: int = 256
    save_every_steps: int = 0
    keep_epoch_checkpoints: bool = False
    resume: bool | str = False
    progress: bool = True
    tensorboard: bool = True

    # ------------------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> TrainConfig:
        """Check every field; raise ``ValueError`` naming the field, the value and what is allowed."""

        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                raise ValueError(f"{name} must be {allowed}; got {getattr(self, name)!r}")

        def pos_int(name: str, minimum: int = 1, optional: bool = False) -> None:
            v = getattr(self, name)
            if optional and v is None:
                return
            need(isinstance(v, int) and not isinstance(v, bool) and v >= minimum, name,
                 f"an int >= {minimum}" + (" or None" if optional else ""))

        pos_int("image_size", 0)
        need(self.channels in (1, 3), "channels", "1 or 3")
        pos_int("limit", optional=True)
        pos_int("val_limit", optional=True)
        pos_int("num_workers", 0)
        pos_int("threads", 0)
        pos_int("epochs")
        pos_int("batch_size")
        pos_int("accumulate")
        pos_int("eval_every")
        pos_int("eval_batch_size")
        pos_int("save_every_steps", 0)
        pos_int("warmup_steps", 0)
        pos_int("reference_size", 0)
        pos_int("num_classes", 2, optional=True)
        need(isinstance(self.seed, int) and self.seed >= 0, "seed", "an int >= 0")
        need(self.optimizer in OPTIMIZERS, "optimizer", " or ".join(map(repr, OPTIMIZERS)))
        need(self.scheduler in SCHEDULERS, "scheduler", " or ".join(map(repr, SCHEDULERS)))
        need(self.amp in AMP_MODES, "amp", " or ".join(map(repr, AMP_MODES)))
        need(self.truncate is None or (isinstance(self.truncate, (int, float)) and self.truncate > 0),
             "truncate", "None or a number > 0")
        for name in ("lr", "momentum", "weight_decay", "label_smoothing", "rotate"):
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, name, "a finite number >= 0")
        need(self.lr > 0, "lr", "> 0")
        need(self.label_smoothing < 1, "label_smoothing", "in [0, 1)")
        need(isinstance(self.model_options, dict), "model_options", "a table/dict")
        need(isinstance(self.regime_options, dict), "regime_options", "a table/dict")
        need(isinstance(self.eval_sigmas, (list, tuple)) and all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s >= 0
            for s in self.eval_sigmas), "eval_sigmas", "a list of finite numbers >= 0")
        self.eval_sigmas = [float(s) for s in self.eval_sigmas]
        for name in ("mean", "std"):
            v = getattr(self, name)
            need(v is None or (isinstance(v, (list, tuple)) and len(v) in (1, self.channels)
                               and all(isinstance(a, (int, float)) for a in v)), name,
                 f"None or a list of 1 or {self.channels} numbers")
        need(self.std is None or all(s > 0 for s in self.std), "std", "positive")
        need(self.batch_size % self.accumulate == 0, "batch_size", f"divisible by accumulate={self.accumulate}")
        return self

    # -------------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys raise ``ValueError`` listing the known ones.

        A ``[regime]`` table with a ``name`` key is accepted as ``regime`` + ``regime_options``.
        """
        d = dict(d)
        if isinstance(d.get("regime"), dict):
            table = dict(d.pop("regime"))
            d["regime"] = table.pop("name", "standard")
            d["regime_options"] = {**table, **d.get("regime_options", {})}
        if isinstance(d.get("model"), dict):
            table = dict(d.pop("model"))
            d["model"] = table.pop("name", "small-cnn")
            d["blurpool"] = table.pop("blurpool", d.get("blurpool", False))
            d["model_options"] = {**table, **d.get("model_options", {})}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**d)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a TOML file (top-level keys are the fields; ``[regime]``/``[model]`` tables allowed).

        TOML has no null: a field left out keeps its default (every default that is ``None`` means
        "automatic"), so ``dump_toml(cfg.to_dict())`` reads back equal to ``cfg``.
        """
        path = Path(path)
        if path.suffix.lower() in (".yaml", ".yml"):
            return cls.from_yaml(path)
        try:
            with path.open("rb") as f:
                d = tomllib.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: invalid TOML ({exc})") from None
        return cls.from_dict(d)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a YAML file with the same layout as the TOML file (needs the optional PyYAML package)."""
        try:
            import yaml
        except ImportError:
            raise ValueError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or use a TOML file") from None
        try:
            with Path(path).open("r", encoding="utf-8") as f:
                d = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise FileNotFoundError(f"config file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: invalid YAML ({exc})") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a mapping of option names to values")
        return cls.from_dict(d)

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``config.toml`` and ``config.json`` into ``folder`` (atomically)."""
        d = self.to_dict()
        atomic_write_text(Path(folder) / "config.json", json.dumps(d, indent=2) + "\n")
        atomic_write_text(Path(folder) / "config.toml", dump_toml(d))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(a) for a in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(a)}" for k, a in v.items() if a is not None) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def dump_toml(d: dict[str, Any]) -> str:
    """Serialise a dict of scalars, lists and (nested) dicts to TOML text (``None`` values are left out)."""
    lines = ["# blurkit training configuration (blurkit train --config this-file)"]
    tables = []
    for k, v in d.items():
        if v is None:
            continue
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, v in tables:
        lines.append(f"\n[{_toml_key(k)}]")
        for kk, vv in v.items():
            if vv is not None:
                lines.append(f"{_toml_key(kk)} = {_toml_value(vv)}")
    return "\n".join(lines) + "\n"

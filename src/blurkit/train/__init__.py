"""Training with blur: ``blurkit.train.train(config)`` and the ``blurkit train`` command.

Example:
    >>> from blurkit.train import train, TrainConfig
    >>> res = train(TrainConfig(regime="strong", epochs=2, image_size=32, limit=2000, out="runs/strong"))
    >>> res.final["val_acc"], res.checkpoint
    >>> model, info = load_model("runs/strong")          # rebuild the trained model from its checkpoint

See ``docs/train.md`` for the regimes, the checkpoint format and the metrics-log schema.
"""

from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .config import TrainConfig
from .distributed import ResumableSampler, StepRandom
from .loop import Preprocess, TrainResult, augment_batch, evaluate, train
from .regimes import REGIMES, Regime, StepContext, build_regime, worst_case_sigma

__all__ = [
    "train",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "Preprocess",
    "augment_batch",
    "ResumableSampler",
    "StepRandom",
    "REGIMES",
    "Regime",
    "StepContext",
    "build_regime",
    "worst_case_sigma",
]

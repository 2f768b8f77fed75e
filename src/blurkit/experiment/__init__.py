"""The main job: train blur regimes, evaluate them and write an HTML report (``blurkit experiment``).

Example:
    >>> from blurkit.experiment import ExperimentConfig, run_experiment
    >>> results = run_experiment(ExperimentConfig.quick_preset(out="runs/quick"))   # ~30 s on 2 CPU cores
    >>> results["regimes"]["strong"]["curves"]["gaussian"]["auc"]
"""

from .report import claims_text, render_report, write_atomic
from .runner import (
    DEFAULT_REGIMES,
    FIGURES,
    ExperimentConfig,
    evaluate_checkpoints,
    evaluate_models,
    rerender,
    run_experiment,
)

__all__ = ["ExperimentConfig", "run_experiment", "evaluate_checkpoints", "evaluate_models", "rerender",
           "render_report", "claims_text", "write_atomic", "DEFAULT_REGIMES", "FIGURES"]

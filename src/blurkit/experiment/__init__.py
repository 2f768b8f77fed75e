"""The main job: train blur regimes, evaluate them and write an HTML report (``blurkit experiment``)."""

from .report import claims_text, render_report, write_atomic

__all__ = ["render_report", "claims_text", "write_atomic"]

"""Evaluation on the bundled offline tasks (MTEB-style metrics)."""

from .suite import SUITES, evaluate_suite, format_table, load_task

__all__ = ["SUITES", "evaluate_suite", "format_table", "load_task"]

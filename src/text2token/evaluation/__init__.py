"""Evaluation on the bundled offline tasks (MTEB-style metrics) and on MTEB itself (imported lazily)."""

_EXPORTS = ("SUITES", "evaluate_suite", "format_table", "load_task")
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        from . import suite

        return getattr(suite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

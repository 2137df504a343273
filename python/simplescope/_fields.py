"""The field and metric names of a Results, and the error for an unknown name.

Shared by results.py (the data), results_io.py (its files) and plots.py (its figures), so that
none of those needs another only for these names.
"""
from __future__ import annotations

#: Metrics averaged per layer (float arrays, NaN where not computed).
METRICS = ("prec1", "surprisal", "paper_surprisal")
#: Integer bookkeeping arrays every method carries.
INT_FIELDS = ("position", "source_top1", "patched_top1")
FIELDS = METRICS + INT_FIELDS


class UnknownNameError(KeyError, ValueError):
    """An unknown method, metric or field name; the message names it and the known ones."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def unknown_name(kind: str, name, known) -> UnknownNameError:
    """The error for ``name``, unknown among the ``known`` names of this ``kind``."""
    return UnknownNameError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(map(str, known)) or '(none)'}")


def check_metric(metric: str) -> str:
    """``metric`` if it is one of METRICS, else UnknownNameError."""
    if metric not in METRICS:
        raise unknown_name("metric", metric, METRICS)
    return metric

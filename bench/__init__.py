"""IQA robustness benchmark.

This top-level module stays free of heavy imports (no torch, no pyiqa) so that the
leaderboard renderer and `python -m bench list` start fast. The plugin contract lives
in :mod:`bench.api`.
"""

__version__ = "0.1.0"

"""Dataset plugins. Importing this package registers them; none imports pyiqa here."""

from bench.datasets import embedded  # noqa: F401

"""Dataset plugins. Importing this package registers them; none imports pyiqa here.

`embedded` is built from photos inside installed packages; the others read a real
dataset from a root folder (see `bench.datasets.roots`) in its official layout or pyiqa's.
"""

from bench.datasets import csiq, embedded, kadid, koniq, live, livec, pipal, spaq, tid2013  # noqa: F401

"""Dataset plugins. Plugin discovery (`bench.plugins`) imports every module here and each
registers itself; this file imports none of them, so that importing a helper
(`bench.datasets.files`, which `bench.api` re-exports) never imports a plugin back, and
one broken loader cannot take the package down with it. None imports pyiqa at import time.

`embedded` is built from photos inside installed packages; the others read a real
dataset from a root folder (see `bench.datasets.roots`) in its official layout or pyiqa's.
The shared helpers `files` (with `layouts` and `scorefiles`), `roots`, `checks` and `sampling`
register nothing; nor do `_embedded_*`, the parts of `embedded`'s build.
"""

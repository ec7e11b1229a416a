"""The decode check of a split's images, remembered between runs.

Decoding every image of a split once (`verify = "decode"`) costs ~2.5 ms a KonIQ-10k
file and ~20 ms a SPAQ photo (measured on one core): 25 s and 4 minutes for the whole
sets. Each result (the conversion the file needs, or why it cannot be used) is kept in
`$BENCH_CACHE/datasets/verified-<dataset>-<root hash>.json` keyed by the file's path,
size and modification time, so a file is decoded again only when it changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from bench.api import ImageError, atomic_write, cache_dir, check_image, progress

VERSION = 1


def _cache_file(dataset: str, root: Path) -> Path:
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    return cache_dir() / "datasets" / f"verified-{dataset}-{digest}.json"


def check_files(paths: list[str], decode: bool, dataset: str, root: Path) -> list[str | ImageError | None]:
    """Per path: the conversion `load_image` will apply (None for RGB) or the ImageError
    that makes the file unusable. Decode results are cached; header checks are not
    (they cost a header read)."""
    if not decode:
        return [_check(p, False) for p in paths]
    cache = _cache_file(dataset, root)
    try:
        known = json.loads(cache.read_text()).get(f"v{VERSION}", {})
    except (OSError, ValueError):
        known = {}
    out: list[str | ImageError | None] = []
    todo: list[tuple[int, str, list[int] | None]] = []  # (index in out, path, stamp) to decode now
    for p in paths:
        try:
            st = os.stat(p)
            stamp = [st.st_size, st.st_mtime_ns]
        except OSError:
            stamp = None
        hit = known.get(p)
        if stamp is not None and hit is not None and hit[:2] == stamp:
            out.append(_result(hit[2]))
        else:
            out.append(None)
            todo.append((len(out) - 1, p, stamp))
    changed = False
    # only the files decoded now are counted: a set whose results are all cached shows no bar
    for i, p, stamp in progress(todo, desc=f"{dataset}: decoding images", unit="img"):
        r = _check(p, True)
        res = f"!{r}" if isinstance(r, ImageError) else r
        if stamp is not None:
            known[p], changed = [*stamp, res], True
        out[i] = _result(res)
    if changed:
        _write(cache, {f"v{VERSION}": known})
    return out


def _result(res: str | None) -> str | ImageError | None:
    """A cached result back to what `check_files` returns ("!why" marks an unusable file)."""
    return ImageError(res[1:]) if isinstance(res, str) and res.startswith("!") else res


def _check(path: str, decode: bool) -> str | ImageError | None:
    try:
        return check_image(path, decode=decode)
    except ImageError as e:
        return e


def _write(path: Path, data: dict) -> None:
    """Atomically (parallel workers may write the same file: the last one wins)."""
    atomic_write(path, json.dumps(data).encode())
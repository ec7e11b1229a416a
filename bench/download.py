"""Published files downloaded into their cache folder, whole or not at all.

torch.hub's download renames a temporary file when the connection ends, but does not
compare what arrived with the announced length: a connection cut mid-file leaves a
truncated checkpoint that a later run would try to load. Here the bytes are counted
against Content-Length before the rename.

BENCH_OFFLINE=1 forbids downloading; BENCH_WEIGHTS_MIRROR=URL fetches each file by its name
from a mirror (a cluster's own copy of the published files) instead of its publisher.
"""

from __future__ import annotations

import os
import tempfile
import urllib.request
from pathlib import Path


def source(url: str) -> str:
    """Where `url` is fetched from: the publisher, or the mirror named by BENCH_WEIGHTS_MIRROR."""
    mirror = os.environ.get("BENCH_WEIGHTS_MIRROR")
    return f"{mirror.rstrip('/')}/{url.rsplit('/', 1)[-1]}" if mirror else url


def download(url: str, path: str | Path, progress: bool = True) -> Path | str:
    """`path` (fetched from `url` where not here yet), or why it could not be had: a
    one-line reason, as a str."""
    path = Path(path)
    if path.is_file():
        return path
    if os.environ.get("BENCH_OFFLINE"):
        return "BENCH_OFFLINE is set"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(source(url), timeout=60) as response:
            expected = int(response.headers.get("Content-Length") or -1)
            got = _copy(response, out, expected, path.name, progress)
        if expected >= 0 and got != expected:
            return f"the download was cut ({got} of {expected} bytes arrived)"
        os.replace(tmp, path)
        return path
    except Exception as e:  # noqa: BLE001 - urllib raises many kinds; all mean "not here"
        first = (str(e).splitlines() or [""])[0][:120]
        return f"the download failed ({type(e).__name__}: {first})"
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _copy(response, out, expected: int, name: str, progress: bool) -> int:  # noqa: ANN001 - file objects
    from bench.progress import progress as bar_for

    got = 0
    with bar_for(desc=f"downloading {name}", total=expected if expected >= 0 else None, unit="B",
                 show=None if progress else False) as bar:
        while chunk := response.read(1 << 20):
            out.write(chunk)
            got += len(chunk)
            bar.update(len(chunk))
    return got

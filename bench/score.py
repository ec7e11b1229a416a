"""`bench score`: score image files, or the images of a folder, with one model.

Every path given is accounted for: a score line `path,score` on stdout for each image
scored, or one line on stderr naming the path and what to do for each that could not be
(a missing path, a file that is not an image, an image too small for the model, a folder
with no image). The scorable ones are scored even when others are not; the exit status
is then 1, so that a script sees that not everything was scored.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.errors import one_line, quoted

# What a folder's images are recognised by (case-insensitively): the photo formats
# Pillow reads, not every format it knows (PDF, HDF5, MPEG, ...).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm",
                  ".jp2")


def expand(paths: list[str]) -> tuple[list[Path], list[str]]:
    """(image files to score, one problem line per path that gives none). A folder gives
    its image files sorted by name, not those of its sub-folders; a file is taken as it
    is (whether it is an image is found when it is read)."""
    files: list[Path] = []
    problems: list[str] = []
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                problems.append(f"cannot score folder {quoted(arg)}: it holds no image file "
                                f"({', '.join(IMAGE_SUFFIXES)}; sub-folders are not searched); give the folder "
                                "the images are in, or the files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            problems.append(f"cannot score {quoted(arg)}: no such file or folder; check the path (a relative "
                            f"path starts at {quoted(Path.cwd())})")
    return files, problems


def score_files(model: Any, files: list[Path], device: str, out: Any = None) -> list[str]:
    """Print `path,score` for each file `model` can score; return one problem line for
    each it cannot (not an image, or smaller than the model's minimum size)."""
    import torch

    from bench.images import ImageError, load_image

    out = out or sys.stdout
    problems = []
    for f in files:
        try:
            x, _ = load_image(f)
        except ImageError as e:
            problems.append(f"cannot score {quoted(f)}: not an image that can be read ({_reason(e)}); give a PNG, "
                            "JPEG, BMP, TIFF or WebP file")
            continue
        side = model.info.min_size
        if min(x.shape[-2:]) < side:
            problems.append(f"cannot score {quoted(f)}: it is {x.shape[-1]}x{x.shape[-2]} and model "
                            f"{quoted(model.info.name)} needs at least {side}x{side}; give a larger image or use a "
                            "model with a smaller minimum")
            continue
        with torch.no_grad():
            s = float(model(x.unsqueeze(0).to(device)).reshape(-1)[0])
        print(f"{one_line(str(f))},{s:.6g}", file=out)
    return problems


def _reason(e: Exception) -> str:
    """load_image's message less its own "image '...' cannot be read (" frame."""
    msg = str(e)
    head = msg.find("cannot be read (")
    return msg[head + len("cannot be read ("):].removesuffix(")") if head >= 0 else msg

"""Regenerate bench/data/pyiqa_zoo.json from random-weights builds of every zoo model
(after a pyiqa upgrade): `python -m bench.models.pyiqa_zoo`. Offline is enough."""

from __future__ import annotations

import json
import sys

from bench.api import MODELS
from bench.models.pyiqa_zoo.build import random_weights
from bench.models.pyiqa_zoo.catalog import BUILT_IN, CROPS_224, entries
from bench.models.pyiqa_zoo.manifest import MANIFEST, record, smallest_side


def main() -> int:
    out, failed, sides = {}, [], {}
    for entry in entries():
        if entry.refused or entry.name in BUILT_IN:
            continue
        try:
            with random_weights():
                model = MODELS.create(entry.name, **({"crops": 1} if entry.arch in CROPS_224 else {})).eval()
        except Exception as e:  # noqa: BLE001 - listed at the end; the others are still recorded
            failed.append(f"{entry.name}: {type(e).__name__}: {e}")
            continue
        out[entry.name] = record(model)
        digest = out[entry.name]["structure"]  # the same network scores at the same sizes
        if digest not in sides:
            sides[digest] = smallest_side(model)
        out[entry.name]["min_size"] = sides[digest]
        print(f"{entry.name}: {len(out[entry.name]['urls'])} files, {out[entry.name]['parameters']:,} parameters, "
              f"scores from {sides[digest]} px", file=sys.stderr)
    MANIFEST.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    for line in failed:
        print(f"error: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

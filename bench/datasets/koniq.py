"""KonIQ-10k (Hosu et al., IEEE TIP 2020): 10,073 in-the-wild photos, authentic
distortions, crowd-sourced MOS.

Official layout (http://database.mmsp-kn.de/koniq-10k-database.html), root holding:
  koniq10k_scores_and_distributions.csv   columns image_name, c1..c5, c_total, MOS, SD,
                                          MOS_zscore (the zip may put it in a folder of
                                          the same name: both are accepted)
  1024x768/  (koniq10k_1024x768.zip)  or  512x384/  (koniq10k_512x384.zip)
The score used is MOS_zscore, 0..100 higher better: the scale the KonCept papers and
pyiqa report (the `MOS` column is the same ratings on 1..5).

pyiqa's layout: root = pyiqa's `datasets/`, with meta_info/meta_info_KonIQ10kDataset.csv
(img_name, mos [0..100], std, split, ...) and koniq10k/1024x768/ or koniq10k/512x384/.

Split: by image (no references), `test_fraction` drawn with the seed, as every dataset
splits; or, with `split = "official"`, the release's own sets (7,058 training, 1,000
validation, 2,015 test images; the validation ones unused), which the KonIQ-10k models'
papers report on: from the `set` column of koniq10k_distributions_sets.csv (official
layout, the release's file that adds that column) or pyiqa's `official_split` column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.api import (
    DatasetInfo,
    FileDataset,
    FileIndex,
    Layout,
    numbers,
    official_sides,
    present,
    pyiqa_nr,
    read_csv,
    register_dataset,
    table,
)

SCORES = "koniq10k_scores_and_distributions.csv|koniq10k_scores_and_distributions/koniq10k_scores_and_distributions.csv"
IMAGES = "1024x768/|512x384/"


SETS = "koniq10k_distributions_sets.csv"  # the scores again, with the official split in `set`
SET_WORDS = {"training": "train", "validation": "val", "test": "test"}


def read_official(root: Path) -> pd.DataFrame:
    path = present(root, f"{SETS}|{SCORES}")  # the file with the split, where it is there
    df = read_csv(path, "koniq10k", ("image_name", "MOS_zscore"))
    names = df["image_name"].astype(str)
    mos = numbers(df["MOS_zscore"], path, "koniq10k")
    split = official_sides(df["set"], path, "koniq10k", SET_WORDS) if "set" in df.columns else None
    return table(names, FileIndex([present(root, IMAGES)]).locate(names, path, "koniq10k"), mos, official=split)


@register_dataset
class KonIQ10k(FileDataset):
    info = DatasetInfo(
        name="koniq10k", mode="NR", mos_name="MOS (z-score scale)", mos_range=(0.0, 100.0),
        mos_lower_better=False, reference="http://database.mmsp-kn.de/koniq-10k-database.html",
        description="10,073 in-the-wild photos (authentic distortions), crowd-sourced MOS, split by image",
        extra={"images": 10073, "references": 0,
               "layout": f"official: {SCORES.split('|')[0]} (or {SETS}, which adds the official split) + {IMAGES}; "
                         "pyiqa: meta_info/meta_info_KonIQ10kDataset.csv + koniq10k/1024x768/|512x384/"},
    )
    by_image = True
    layouts = (Layout("official", (f"{SCORES}|{SETS}", IMAGES), read_official),
               pyiqa_nr("koniq10k", "meta_info_KonIQ10kDataset.csv", "koniq10k/1024x768/|koniq10k/512x384/"))

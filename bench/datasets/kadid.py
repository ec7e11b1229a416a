"""KADID-10k (Lin, Hosu, Saupe, QoMEX 2019): 81 pristine references x 25 synthetic
distortions x 5 levels = 10,125 images, crowd-sourced scores.

Official layout (http://database.mmsp-kn.de/kadid-10k-database.html, kadid10k.zip),
root holding:
  dmos.csv    columns dist_img, ref_img, dmos, var
  images/     the distorted images (I01_01_01.png ...) and the references (I01.png ...)
The `dmos` column is, despite its name, a mean opinion score on 1..5, higher better
(the paper's "DMOS" is the mean of degradation ratings against the reference).

pyiqa's layout: root = pyiqa's `datasets/`, with meta_info/meta_info_KADID10kDataset.csv
(ref, distorted image, score by position) and kadid10k/images/.

Split: by reference image, `test_fraction` of the 81 drawn with the seed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.api import DatasetInfo, FileDataset, FileIndex, Layout, numbers, pyiqa_fr, read_csv, register_dataset, table


def read_official(root: Path) -> pd.DataFrame:
    path = root / "dmos.csv"
    df = read_csv(path, "kadid10k", ("dist_img", "ref_img", "dmos"))
    index = FileIndex([root / "images"])
    names, refs = df["dist_img"].astype(str), df["ref_img"].astype(str)
    return table(names, index.locate(names, path, "kadid10k"), numbers(df["dmos"], path, "kadid10k"), refs,
                 index.locate(refs, path, "kadid10k"))


@register_dataset
class KADID10k(FileDataset):
    info = DatasetInfo(
        name="kadid10k", mode="FR", mos_name="MOS (named dmos in the release)", mos_range=(1.0, 5.0),
        mos_lower_better=False, reference="http://database.mmsp-kn.de/kadid-10k-database.html",
        description="81 references x 25 synthetic distortions x 5 levels, crowd-sourced MOS, split by reference",
        extra={"images": 10125, "references": 81,
               "layout": "official: dmos.csv + images/; pyiqa: meta_info/meta_info_KADID10kDataset.csv + "
                         "kadid10k/images/"},
    )
    layouts = (Layout("official", ("dmos.csv", "images/"), read_official),
               pyiqa_fr("kadid10k", "meta_info_KADID10kDataset.csv", "kadid10k/images/"))

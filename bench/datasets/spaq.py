"""SPAQ (Fang et al., CVPR 2020, "Perceptual Quality Assessment of Smartphone
Photography"): 11,125 smartphone photos, authentic distortions, MOS 0..100.

Official layout (https://github.com/h4nwei/SPAQ; the release's Baidu/OneDrive folders),
root holding:
  Annotations/MOS and Image attribute scores.xlsx   columns "Image name", "MOS", then
                                                    the attribute scores
  TestImage/                                        00001.jpg ... 11125.jpg
Reading the .xlsx needs openpyxl (a dependency of this package). The photos are large
(~4000 x 3000): they are decoded at a reduced JPEG scale before resizing (see
`bench.images`), which is what makes `size` 384 affordable.

pyiqa's layout: root = pyiqa's `datasets/`, with meta_info/meta_info_SPAQDataset.csv
(Image name, MOS, ...) and SPAQ/TestImage/.

Split: by image, `test_fraction` drawn with the seed.
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
    pyiqa_nr,
    read_excel,
    register_dataset,
    table,
)

SCORES = "Annotations/MOS and Image attribute scores.xlsx"


def read_official(root: Path) -> pd.DataFrame:
    path = root / SCORES
    df = read_excel(path, "spaq", ("Image name", "MOS"))
    names = df["Image name"].astype(str).str.strip()
    mos = numbers(df["MOS"], path, "spaq")
    return table(names, FileIndex([root / "TestImage"]).locate(names, path, "spaq"), mos)


@register_dataset
class SPAQ(FileDataset):
    info = DatasetInfo(
        name="spaq", mode="NR", mos_name="MOS", mos_range=(0.0, 100.0), mos_lower_better=False,
        reference="https://github.com/h4nwei/SPAQ",
        description="11,125 smartphone photos, authentic distortions, MOS 0..100, split by image",
        extra={"images": 11125, "references": 0,
               "layout": f"official: '{SCORES}' + TestImage/; pyiqa: meta_info/meta_info_SPAQDataset.csv + "
                         "SPAQ/TestImage/"},
    )
    by_image = True
    layouts = (Layout("official", (SCORES, "TestImage/"), read_official),
               pyiqa_nr("spaq", "meta_info_SPAQDataset.csv", "SPAQ/TestImage/"))

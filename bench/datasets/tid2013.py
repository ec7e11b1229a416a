"""TID2013 (Ponomarenko et al., Signal Processing: Image Communication 2015): 25
references x 24 distortions x 5 levels = 3,000 images, MOS 0..9 higher better.

Official layout (https://www.ponomarenko.info/tid2013.htm, tid2013.rar), root holding:
  mos_with_names.txt   one line per image: "<MOS> <image name>", e.g. "5.51429 i01_01_1.bmp"
  distorted_images/    i01_01_1.bmp ... (the case of names differs between the list and
                       the files in some copies: matched case-insensitively, as pyiqa does)
  reference_images/    I01.BMP ... I25.BMP (i25.bmp in the release)
The reference of `iXX_..` is image XX.

pyiqa's layout: root = pyiqa's `datasets/`, with meta_info/meta_info_TID2013Dataset.csv
(ref_name, dist_name, mos, std) and tid2013/distorted_images/, tid2013/reference_images/.

Split: by reference image, `test_fraction` of the 25 drawn with the seed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.api import (
    DatasetInfo,
    FileDataset,
    FileIndex,
    Layout,
    ScoreFileError,
    numbers,
    pyiqa_fr,
    read_csv,
    register_dataset,
    table,
)


def read_official(root: Path) -> pd.DataFrame:
    path = root / "mos_with_names.txt"
    df = read_csv(path, "tid2013", header=None, sep=r"\s+", names=["mos", "name"], dtype=str)
    if df["name"].isna().any():
        line = int(df["name"].isna().to_numpy().argmax()) + 1
        raise ScoreFileError(f"dataset 'tid2013': line {line} of '{path}' is not '<MOS> <image name>'")
    names = df["name"]
    mos = numbers(df["mos"], path, "tid2013", first_line=1)
    refs = [f"I{n[1:3]}.BMP" for n in names]
    return table(names, FileIndex([root / "distorted_images"]).locate(names, path, "tid2013"), mos, refs,
                 FileIndex([root / "reference_images"]).locate(refs, path, "tid2013"))


@register_dataset
class TID2013(FileDataset):
    info = DatasetInfo(
        name="tid2013", mode="FR", mos_name="MOS", mos_range=(0.0, 9.0), mos_lower_better=False,
        reference="https://www.ponomarenko.info/tid2013.htm",
        description="25 references x 24 distortions x 5 levels, MOS 0..9, split by reference",
        extra={"images": 3000, "references": 25,
               "layout": "official: mos_with_names.txt + distorted_images/ + reference_images/; pyiqa: "
                         "meta_info/meta_info_TID2013Dataset.csv + tid2013/{distorted,reference}_images/"},
    )
    layouts = (Layout("official", ("mos_with_names.txt", "distorted_images/", "reference_images/"), read_official),
               pyiqa_fr("tid2013", "meta_info_TID2013Dataset.csv", "tid2013/distorted_images/",
                        "tid2013/reference_images/"))

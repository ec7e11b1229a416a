"""LIVE In the Wild Image Quality Challenge (Ghadiyaram & Bovik, IEEE TIP 2016): 1,162
photos with authentic distortions from mobile devices, crowd-sourced MOS 0..100.

Official layout (https://live.ece.utexas.edu/research/ChallengeDB/index.html,
ChallengeDB_release.zip), root holding:
  Data/AllImages_release.mat   variable `AllImages_release` (1162 x 1 cell of file names)
  Data/AllMOS_release.mat      variable `AllMOS_release` (1 x 1162)
  Images/                      the photos; the first 7 listed sit in Images/trainingImages/
The first 7 entries are the images used to train the raters, not rated in the study
proper; they are left out, as pyiqa's LIVEChallengeDataset and the papers do: 1,155 used.

pyiqa's layout: root = pyiqa's `datasets/`, with
meta_info/meta_info_LIVEChallengeDataset.csv (img_name, mos, std; first 7 rows dropped
likewise) and LIVEC/.

Split: by image, `test_fraction` drawn with the seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.api import (
    DatasetInfo,
    FileDataset,
    FileIndex,
    Layout,
    ScoreFileError,
    numbers,
    pyiqa_nr,
    read_mat,
    register_dataset,
    table,
)

N_TRAINING = 7  # rater-training images at the head of the list


def read_official(root: Path) -> pd.DataFrame:
    names_path, mos_path = root / "Data" / "AllImages_release.mat", root / "Data" / "AllMOS_release.mat"
    names = [str(np.asarray(n).ravel()[0]) for n in np.asarray(read_mat(names_path, "livec", "AllImages_release")).ravel()]
    mos = numbers(np.asarray(read_mat(mos_path, "livec", "AllMOS_release")).ravel(), mos_path, "livec",
                  what="MOS", first_line=1)
    if len(names) != len(mos):
        raise ScoreFileError(f"dataset 'livec': '{names_path}' lists {len(names)} images but '{mos_path}' has "
                             f"{len(mos)} scores; they are not from the same release")
    names, mos = names[N_TRAINING:], mos[N_TRAINING:]
    return table(names, FileIndex([root / "Images"], recursive=True).locate(names, names_path, "livec"), mos)


@register_dataset
class LIVEChallenge(FileDataset):
    info = DatasetInfo(
        name="livec", mode="NR", mos_name="MOS", mos_range=(0.0, 100.0), mos_lower_better=False,
        reference="https://live.ece.utexas.edu/research/ChallengeDB/index.html",
        description="LIVE In the Wild Challenge: 1,162 mobile photos (first 7 rater-training images left out), "
                    "authentic distortions, crowd MOS, split by image",
        extra={"images": 1155, "references": 0,
               "layout": "official: Data/AllImages_release.mat + Data/AllMOS_release.mat + Images/; "
                         "pyiqa: meta_info/meta_info_LIVEChallengeDataset.csv + LIVEC/"},
    )
    by_image = True
    layouts = (Layout("official", ("Data/AllImages_release.mat", "Data/AllMOS_release.mat", "Images/"),
                      read_official),
               pyiqa_nr("livec", "meta_info_LIVEChallengeDataset.csv", "LIVEC/", skip=N_TRAINING))

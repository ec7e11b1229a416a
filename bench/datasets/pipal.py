"""PIPAL (Jinjin et al., ECCV 2020; NTIRE 2021/2022 perceptual IQA challenges): 200
references x 116 distortions (many from image restoration and GAN outputs) = 23,200
training images with public labels: Elo scores from pairwise preferences, higher better.

Official layout (https://www.jasongt.com/projectpages/pipal.html, the challenge's
training release), root holding:
  Train_Label/*.txt     one line per image: "<distorted name>,<Elo score>", e.g.
                        "A0001_00_00.bmp,1446.7412"
  Train_Dist/ or Distortion_1/ ... Distortion_N/   the distorted images (the release
                        splits them over several Distortion_* archives; all are searched)
  Train_Ref/            A0001.bmp ...; the reference of "A0001_xx_yy.bmp" is A0001.bmp
Only the training part has public labels; the validation and test labels were held by
the challenge. Elo scores have no fixed range: the declared (800, 1900) brackets the
published training labels (about 900 to 1850).

pyiqa's layout: root = pyiqa's `datasets/`, with meta_info/meta_info_PIPALDataset.csv
(hq_name, dist_name, elo_score) and PIPAL/Dist_Imgs/, PIPAL/Train_Ref/.

Split: by reference image, `test_fraction` of the 200 drawn with the seed.
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
    files = sorted((root / "Train_Label").glob("*.txt"))
    if not files:
        raise ScoreFileError(f"dataset 'pipal': no label file (*.txt) in '{root / 'Train_Label'}'; extract "
                             f"Train_Label.zip of the training release there")
    parts = []
    for f in files:
        df = read_csv(f, "pipal", header=None, names=["name", "elo"], dtype=str)
        parts.append(df.assign(mos=numbers(df["elo"], f, "pipal", first_line=1)))
    df = pd.concat(parts, ignore_index=True)
    names = df["name"].str.strip()
    refs = [f"{n.split('_')[0]}.bmp" for n in names]
    dist = FileIndex(sorted(root.glob("Distortion_*")) + [p for p in [root / "Train_Dist"] if p.is_dir()])
    return table(names, dist.locate(names, root / "Train_Label", "pipal"), df["mos"], refs,
                 FileIndex([root / "Train_Ref"]).locate(refs, root / "Train_Label", "pipal"))


@register_dataset
class PIPAL(FileDataset):
    info = DatasetInfo(
        name="pipal", mode="FR", mos_name="Elo score", mos_range=(800.0, 1900.0), mos_lower_better=False,
        reference="https://www.jasongt.com/projectpages/pipal.html",
        description="PIPAL training set: 200 references x 116 distortions (incl. restoration/GAN outputs), "
                    "Elo scores, split by reference",
        extra={"images": 23200, "references": 200,
               "layout": "official: Train_Label/*.txt + Train_Dist/|Distortion_*/ + Train_Ref/; pyiqa: "
                         "meta_info/meta_info_PIPALDataset.csv + PIPAL/Dist_Imgs/ + PIPAL/Train_Ref/"},
    )
    layouts = (Layout("official", ("Train_Label/", "Train_Dist/|Distortion_1/", "Train_Ref/"), read_official),
               pyiqa_fr("pipal", "meta_info_PIPALDataset.csv", "PIPAL/Dist_Imgs/", "PIPAL/Train_Ref/"))

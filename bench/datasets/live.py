"""LIVE Image Quality Assessment Database, release 2 (Sheikh, Sabir, Bovik, IEEE TIP 2006):
29 references, 5 distortions, 779 distorted images, DMOS (lower is better).

Official layout (https://live.ece.utexas.edu/research/quality/subjective.htm,
databaserelease2.zip), root holding:
  dmos.mat          variables `dmos` (1 x 982) and `orgs` (1 x 982, 1 where the entry is
                    an undistorted original)
  refnames_all.mat  variable `refnames_all` (1 x 982 cell: each entry's reference file)
  jp2k/ jpeg/ wn/ gblur/ fastfading/   img1.bmp ... with 227, 233, 174, 174, 174 entries,
                    in that order in the .mat files (the release's readme)
  refimgs/          the 29 references
Entries with orgs = 1 (the originals, DMOS 0) are left out, as pyiqa and the papers do.
DMOS here is the release's `dmos.mat`, not the realigned `dmos_realigned.mat`.

pyiqa's layout: root = pyiqa's `datasets/`, with meta_info/meta_info_LIVEIQADataset.csv
(ref_name "refimgs/x.bmp", dist_name "jp2k/img1.bmp", mos) and LIVEIQA_release2/.

Split: by reference image, `test_fraction` of the 29 drawn with the seed.
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
    pyiqa_fr,
    read_mat,
    register_dataset,
    table,
)

FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))
N_ENTRIES = sum(n for _, n in FOLDERS)  # 982


def read_official(root: Path) -> pd.DataFrame:
    path, ref_path = root / "dmos.mat", root / "refnames_all.mat"
    dmos = np.asarray(read_mat(path, "live", "dmos")).ravel()
    orgs = np.asarray(read_mat(path, "live", "orgs")).ravel()
    refnames = [str(np.asarray(r).ravel()[0]) for r in np.asarray(read_mat(ref_path, "live", "refnames_all")).ravel()]
    for what, arr in (("dmos", dmos), ("orgs", orgs), ("refnames_all", refnames)):
        if len(arr) != N_ENTRIES:
            raise ScoreFileError(f"dataset 'live': '{what}' has {len(arr)} entries, release 2 has {N_ENTRIES} "
                                 f"({', '.join(f'{f} {n}' for f, n in FOLDERS)}); it is not release 2's file")
    names = [f"{folder}/img{i}.bmp" for folder, n in FOLDERS for i in range(1, n + 1)]
    mos = numbers(dmos, path, "live", what="dmos", first_line=1)
    keep = np.flatnonzero(np.asarray(orgs) != 1)
    names = [names[i] for i in keep]
    refs = [f"refimgs/{refnames[i]}" for i in keep]
    index = FileIndex([root], recursive=True)
    return table(names, index.locate(names, path, "live"), mos[keep], refs, index.locate(refs, ref_path, "live"))


@register_dataset
class LIVE(FileDataset):
    info = DatasetInfo(
        name="live", mode="FR", mos_name="DMOS", mos_range=(0.0, 100.0), mos_lower_better=True,
        reference="https://live.ece.utexas.edu/research/quality/subjective.htm",
        description="LIVE IQA release 2: 29 references, 5 distortions, 779 images, DMOS, split by reference",
        extra={"images": 779, "references": 29,
               "layout": "official: dmos.mat + refnames_all.mat + jp2k/ jpeg/ wn/ gblur/ fastfading/ refimgs/; "
                         "pyiqa: meta_info/meta_info_LIVEIQADataset.csv + LIVEIQA_release2/"},
    )
    layouts = (Layout("official", ("dmos.mat", "refnames_all.mat", "jp2k/", "jpeg/", "wn/", "gblur/", "fastfading/",
                                   "refimgs/"), read_official),
               pyiqa_fr("live", "meta_info_LIVEIQADataset.csv", "LIVEIQA_release2/"))

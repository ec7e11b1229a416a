"""CSIQ (Larson & Chandler, Journal of Electronic Imaging 2010): 30 references, 6
distortions, 866 distorted images, DMOS on 0..1 (lower is better).

Layouts accepted, first found wins (root = the extracted CSIQ folder unless said):
  official: csiq.DMOS.xlsx (sheet `all_by_image`: columns image, dst_type, dst_lev,
            dmos), dst_imgs/ (one folder per distortion: awgn/1600.AWGN.1.png ...),
            src_imgs/ (1600.png ...). The distorted file of a row is
            "<image>.<TYPE>.<level>.png", TYPE by dst_type: noise -> AWGN, jpeg -> JPEG,
            jpeg 2000 -> jpeg2000, fnoise -> fnoise, blur -> BLUR, contrast -> contrast
            (matched case-insensitively, in any sub-folder of dst_imgs/). This mapping
            and the sheet's header are read from the release as it is commonly
            distributed; the header row is found by its `dmos` cell, not assumed.
  label:    csiq_label.txt ("<distorted name> <dmos>" per line, e.g. "1600.AWGN.1.png
            0.062"), the file pyiqa's scripts/process_csiq.py builds its table from,
            with dst_imgs/ and src_imgs/; the reference is "<first dotted part>.png".
  pyiqa:    root = pyiqa's `datasets/`, meta_info/meta_info_CSIQDataset.csv
            (ref_name, dist_name, dmos) with CSIQ/dst_imgs/ and CSIQ/src_imgs/.
Split: by reference image, `test_fraction` of the 30 drawn with the seed.
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
    read_excel,
    register_dataset,
    table,
)

TYPE_TOKEN = {"noise": "AWGN", "awgn": "AWGN", "jpeg": "JPEG", "jpeg 2000": "jpeg2000", "jpeg2000": "jpeg2000",
              "fnoise": "fnoise", "blur": "BLUR", "contrast": "contrast"}


def _images(root: Path, names: list[str], refs: list[str], mos: list[float] | pd.Series, listed_in: Path) \
        -> pd.DataFrame:
    dist, src = FileIndex([root / "dst_imgs"], recursive=True), FileIndex([root / "src_imgs"])
    return table(names, dist.locate(names, listed_in, "csiq"), mos, refs, src.locate(refs, listed_in, "csiq"))


def read_xlsx(root: Path) -> pd.DataFrame:
    path = root / "csiq.DMOS.xlsx"
    raw = read_excel(path, "csiq", sheet_name="all_by_image", header=None, dtype=str)
    header = raw.index[raw.apply(lambda r: r.astype(str).str.strip().str.lower().eq("dmos").any(), axis=1)]
    if not len(header):
        raise ScoreFileError(f"dataset 'csiq': sheet 'all_by_image' of '{path}' has no 'dmos' column; "
                             f"it is not the official file")
    h = int(header[0])
    df = raw.iloc[h + 1:].set_axis([str(c).strip().lower() for c in raw.iloc[h]], axis=1).dropna(how="all")
    for col in ("image", "dst_type", "dst_lev", "dmos"):
        if col not in df.columns:
            raise ScoreFileError(f"dataset 'csiq': sheet 'all_by_image' of '{path}' lacks column '{col}'")
    unknown = sorted(set(df["dst_type"].str.strip().str.lower()) - set(TYPE_TOKEN))
    if unknown:
        raise ScoreFileError(f"dataset 'csiq': '{path}' names unknown distortion type(s) {unknown} "
                             f"(known: {sorted(TYPE_TOKEN)})")
    image = df["image"].str.strip()
    level = numbers(df["dst_lev"], path, "csiq", what="level", lines=df.index + 1).astype(int)
    tokens = df["dst_type"].str.strip().str.lower().map(TYPE_TOKEN)
    names = [f"{i}.{t}.{lev}.png" for i, t, lev in zip(image, tokens, level, strict=True)]
    mos = numbers(df["dmos"], path, "csiq", lines=df.index + 1)  # the sheet's own row numbers
    return _images(root, names, [f"{i}.png" for i in image], mos, path)


def read_label(root: Path) -> pd.DataFrame:
    path = root / "csiq_label.txt"
    df = read_csv(path, "csiq", header=None, sep=r"\s+", names=["name", "dmos"], dtype=str)
    names = df["name"].tolist()
    return _images(root, names, [f"{n.split('.')[0]}.png" for n in names],
                   numbers(df["dmos"], path, "csiq", first_line=1), path)


@register_dataset
class CSIQ(FileDataset):
    info = DatasetInfo(
        name="csiq", mode="FR", mos_name="DMOS", mos_range=(0.0, 1.0), mos_lower_better=True,
        reference="https://s2.smu.edu/~eclarson/csiq.html",
        description="30 references x 6 distortions x 4-5 levels, 866 images, DMOS 0..1, split by reference",
        extra={"images": 866, "references": 30,
               "layout": "official: csiq.DMOS.xlsx + dst_imgs/ + src_imgs/; or csiq_label.txt + dst_imgs/ + "
                         "src_imgs/; pyiqa: meta_info/meta_info_CSIQDataset.csv + CSIQ/dst_imgs/ + CSIQ/src_imgs/"},
    )
    layouts = (Layout("official", ("csiq.DMOS.xlsx", "dst_imgs/", "src_imgs/"), read_xlsx),
               Layout("label", ("csiq_label.txt", "dst_imgs/", "src_imgs/"), read_label),
               pyiqa_fr("csiq", "meta_info_CSIQDataset.csv", "CSIQ/dst_imgs/", "CSIQ/src_imgs/"))

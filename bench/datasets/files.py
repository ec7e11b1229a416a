"""What every real dataset loader shares: finding its root, recognising the layout it
was extracted in, reading score files into one table, and building lazy splits.

The layouts and their table are in `bench.datasets.layouts`, the score-file readers in
`bench.datasets.scorefiles`; both are re-exported here, where `FileDataset` uses them.

When decoding is checked: `split` checks exactly the images it returns, once, before any
model sees them. With `verify = "decode"` (the default) each is opened and decoded at a
reduced JPEG scale, which catches truncated files (results are cached, see
`bench.datasets.checks`); `"header"` only opens
headers (catches non-images and tiny images, not truncation; a truncated file then fails
with an error naming it when it is first read). Files that fail are skipped with a
warning (one line per split, on stderr) and counted in the split's notes (`skipped`,
`skipped_files`), which every record keeps for both splits; files that are not 8-bit RGB are counted by conversion (`converted`, e.g. {"L->RGB": 3}), read from the
header, and converted on load as `bench.images.load_image` documents. A stratified
`n_images` sample that loses a file this way is one image short, not refilled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from bench.api import (
    MIN_SIDE,
    Field,
    ImageError,
    IQADataset,
    IQASplit,
    LazyImages,
    Params,
    warn,
)
from bench.datasets.checks import check_files
from bench.datasets.layouts import (  # noqa: F401 - all importable from here, as before they moved
    FileIndex,
    Layout,
    official_sides,
    present,
    pyiqa_fr,
    pyiqa_nr,
    table,
)
from bench.datasets.roots import CONFIG_NAME, DataRootError, env_var, find_root
from bench.datasets.sampling import split_groups, stratified
from bench.datasets.scorefiles import (  # noqa: F401 - all importable from here, as before they moved
    ONLY_EMPTY_IS_MISSING,
    ScoreFileError,
    numbers,
    read_csv,
    read_excel,
    read_mat,
    require_columns,
)

VERIFY_MODES = ("decode", "header")


class FileDataset(IQADataset):
    """A dataset read from files under a root folder; subclasses declare `layouts`.

    Parameters: `root` (None: from --data-root, $BENCH_DATA_<NAME> or a config file; see
    `bench.datasets.roots`), `size` (each image's shorter side is resized to it, Lanczos,
    then centre-cropped to size x size so batches stack), `test_fraction` (share of
    reference images, or of images for authentic sets, on the test side), `n_images` and
    `n_train` (thin the test / train side to this many images, one per equal-count MOS
    stratum, so the score spread is kept), `verify` ("decode" or "header", see above).
    """

    layouts: ClassVar[tuple[Layout, ...]] = ()
    by_image: ClassVar[bool] = False  # authentic distortions: every image is its own group

    class Params(Params):
        root: str | None = Field(None, description="folder holding the dataset (None: from --data-root, "
                                 "$BENCH_DATA_<NAME> or bench-data.toml; a root given here is part of the keys)")
        size: int = Field(384, ge=MIN_SIDE, description="side of the square each image is resized (shorter side, "
                          "Lanczos) and centre-cropped to, px")
        test_fraction: float = Field(0.2, gt=0, lt=1, description="share of references (of images, for authentic "
                                     "sets) on the test side, drawn with the seed")
        split: Literal["seeded", "official"] = Field(
            "seeded", description="'seeded': test_fraction drawn with the seed; 'official': the release's own train "
            "and test sets (validation images unused), where its layout has them (KonIQ-10k)")
        n_images: int | None = Field(None, ge=1, description="thin the test side to this many images, one per "
                                     "equal-count MOS stratum (None: all)")
        n_train: int | None = Field(None, ge=1, description="thin the train side likewise (None: all)")
        verify: Literal["decode", "header"] = Field("decode", description="check before use: decode every image "
                                                    "once (cached), or read only headers")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._table: pd.DataFrame | None = None
        self._root = Path()
        self.layout: Layout | None = None
        self._ref_of: dict[str, str | None] = {}

    # -- where and how
    @classmethod
    def expected(cls) -> str:
        return " or ".join(f"{lay.name} ({', '.join(lay.needs)})" for lay in cls.layouts)

    def root(self) -> Path:
        name, url = self.info.name, self.info.reference
        if self.params["root"] is not None:
            root, where = Path(str(self.params["root"])).expanduser(), "the matrix's root parameter"
        else:
            found, where = find_root(name)
            if found is None:
                raise DataRootError(f"dataset '{name}': no root configured (looked at {where}); extract the "
                                    f"dataset (published at {url}) into a folder holding {self.expected()} and give "
                                    f"it with --data-root {name}=PATH, ${env_var(name)} or a line "
                                    f"{name} = \"PATH\" in {CONFIG_NAME}")
            root = found
        if not root.is_dir():
            raise DataRootError(f"dataset '{name}': root '{root}' (from {where}) is not a directory; extract the "
                                f"dataset (published at {url}) there so that it holds {self.expected()}, or give "
                                f"the folder that does with --data-root {name}=PATH")
        return root

    def find_layout(self, root: Path) -> Layout:
        for lay in self.layouts:
            if not lay.missing(root):
                return lay
        why = "; ".join(f"{lay.name} layout lacks {', '.join(lay.missing(root))}" for lay in self.layouts)
        raise DataRootError(f"dataset '{self.info.name}': root '{root}' does not hold it ({why}); extract the "
                            f"release there (published at {self.info.reference}) or fix --data-root "
                            f"{self.info.name}=PATH / ${env_var(self.info.name)}")

    @classmethod
    def root_status(cls) -> str:
        """One cheap line for `bench list datasets`: where the root is and whether it
        holds a known layout (stat calls only, no file is read)."""
        found, where = find_root(cls.info.name)
        if found is None:
            return f"root: not configured (--data-root {cls.info.name}=PATH, ${env_var(cls.info.name)} or bench-data.toml)"
        for lay in cls.layouts:
            if not lay.missing(found):
                return f"root: {found} (from {where}; {lay.name} layout found)"
        return f"root: {found} (from {where}) but no layout found there; expected {cls.expected()}"

    def table(self) -> pd.DataFrame:
        """The dataset's table of all images (read once; no image is opened)."""
        if self._table is None:
            root = self._root = self.root()
            self.layout = self.find_layout(root)
            df = self.layout.read(root)
            if df["name"].duplicated().any():
                dup = df.loc[df["name"].duplicated(), "name"].iloc[0]
                raise ScoreFileError(f"dataset '{self.info.name}': image '{dup}' is listed twice in its score file "
                                     f"under '{root}'; re-download the file")
            if len(df) == 0:
                raise ScoreFileError(f"dataset '{self.info.name}': the score file under '{root}' lists no image")
            self._table = df.reset_index(drop=True)
            self._ref_of = dict(zip(self._table["name"], self._table["ref_image"], strict=True))
        return self._table

    # -- splits
    def split(self, seed: int) -> tuple[IQASplit, IQASplit]:
        df = self.table()
        mos = df["mos"].to_numpy()
        if self.params["split"] == "official":
            in_train, in_test = self._official(df)
        else:
            groups = df["name"].to_numpy() if self.by_image else df["ref"].to_numpy()
            try:
                in_test = split_groups(groups, self.params["test_fraction"], seed)
            except ValueError as e:
                raise ScoreFileError(f"dataset '{self.info.name}': {e}") from None
            in_train = ~in_test
        out = []
        for side, mask, n in (("train", in_train, self.params["n_train"]), ("test", in_test, self.params["n_images"])):
            idx = np.flatnonzero(mask)
            if n is not None and n < len(idx):
                idx = stratified(idx, mos[idx], n, seed + (0 if side == "test" else 1))
            out.append(self._make_split(df, idx, side))
        return out[0], out[1]

    def _official(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The release's own train and test masks (its validation images are in neither)."""
        if "official" not in df.columns:
            layout = self.layout.name if self.layout else "?"
            raise ScoreFileError(f"dataset '{self.info.name}': split = \"official\" but its {layout} layout under "
                                 f"'{self._root}' names no official split; use split = \"seeded\" or give the layout "
                                 "that has one")
        side = df["official"].to_numpy()
        return side == "train", side == "test"

    def _make_split(self, df: pd.DataFrame, idx: np.ndarray, side: str = "test") -> IQASplit:
        keep, skipped, converted, why = [], [], {}, []
        paths = df["image"].iloc[idx].tolist()
        results = check_files(paths, self.params["verify"] == "decode", self.info.name, self._root)
        for i, res in zip(idx, results, strict=True):
            if isinstance(res, ImageError):
                skipped.append(str(df["name"].iat[i]))
                why.append(str(res))
                continue
            if res:
                converted[res] = converted.get(res, 0) + 1
            keep.append(int(i))
        if skipped:
            warn(skipped_line(self.info.name, side, why))
        rows = df.iloc[keep]
        notes: dict[str, Any] = {"dataset_layout": self.layout.name if self.layout else "?",
                                 "verify": self.params["verify"], "size": self.params["size"],
                                 "skipped": len(skipped), "skipped_files": skipped, "converted": converted}
        return IQASplit(
            images=LazyImages(rows["image"].tolist(), self.params["size"]),  # type: ignore[arg-type]
            mos=torch.tensor(rows["mos"].to_numpy(), dtype=torch.float32),
            names=rows["name"].tolist(),
            refs=rows["ref"].tolist(),
            notes=notes,
        )

    def references(self, split: IQASplit) -> LazyImages:
        """The reference image of each of `split`'s images, lazily, at the same size
        (FR sets only; authentic sets have none)."""
        if self.info.mode != "FR":
            raise DataRootError(f"dataset '{self.info.name}' has no reference images (mode {self.info.mode})")
        self.table()
        return LazyImages([self._ref_of[n] for n in split.names], self.params["size"])  # type: ignore[misc]


def skipped_line(dataset: str, side: str, reasons: list[str], shown: int = 3) -> str:
    """One warning for all the files a split lost: how many, and why for the first few
    (a damaged download can lose thousands; one line each would bury everything else)."""
    n = len(reasons)
    more = f"; and {n - shown} more, listed in each record's data notes" if n > shown else ""
    return (f"dataset '{dataset}': skipped {n} file{'s' if n != 1 else ''} of the {side} split "
            f"({'; '.join(reasons[:shown])}{more})")

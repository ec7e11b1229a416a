"""How a dataset's images are divided and thinned, shared by every loader."""

from __future__ import annotations

import numpy as np


def stratified(idx: np.ndarray, mos: np.ndarray, n: int, seed: int) -> np.ndarray:
    """One image drawn from each of n equal-count MOS strata: a small test set keeps the
    whole score range, which a plain random draw of a few images would not."""
    rng = np.random.default_rng([seed, 7919])
    order = idx[np.argsort(mos, kind="stable")]
    picks = [int(rng.choice(chunk)) for chunk in np.array_split(order, n)]
    return np.sort(np.asarray(picks))


def split_groups(groups: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the test side: whole groups (reference images, or single images for
    authentic-distortion sets) drawn with `seed`, so no group is on both sides. Groups are
    sorted first, so the draw does not depend on file order."""
    unique = np.unique(groups)
    if len(unique) < 2:
        raise ValueError(f"cannot split {len(unique)} group(s) into train and test")
    rng = np.random.default_rng(seed)
    n_test = min(len(unique) - 1, max(1, round(test_fraction * len(unique))))
    test = rng.permutation(unique)[:n_test]
    return np.isin(groups, test)

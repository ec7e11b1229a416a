"""The columns of the cell tables (the leaderboard's, each defense's): key, label, how a value
is shown, and the one line that says what a measure is (the header's tooltip, and the
"What each measure means" list under each cell table)."""

from __future__ import annotations

from dataclasses import dataclass

from bench import record


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = "text"  # "text", "num" (as is), "dec3" (3 decimals), "est" ([value, lo, hi(, flagged)])
    mos: bool = False  # a correlation with the dataset's MOS: the header names it
    eps: float | None = None  # a per-budget column: the eps filter hides the others
    link: str = ""  # "defense" or "model": the text links to that page
    title: str = ""  # the header's tooltip: what the number is


# The per-cell table; the pages build it from compact JSON (see `payload`).
CELL_COLUMNS = [
    Column("model", "model", link="model"), Column("dataset", "dataset"), Column("defense", "defense", link="defense"),
    Column("defense_kind", "defense kind"), Column("attack", "attack"),
    Column("eps", "eps", "num", title="the attack's budget, in the unit beside it"),
    Column("budget_unit", "unit", title="eps's unit: 1/255 of the [0, 1] range (L-inf attacks), or px, the largest "
           "displacement of a flow attack; worst cases over attacks take L-inf cells only"),
    Column("status", "status"), Column("n_images", "images", "num"),
    Column("srocc_clean", "SROCC clean", "dec3", mos=True, title="rank correlation of the defended model's clean "
           "scores with the dataset's opinion scores, signed so that agreeing with the raters is positive"),
    Column("srocc_attacked", "SROCC attacked", "dec3", mos=True, title="the same for its scores of the attacked "
           "images: how much of the ranking the attack left"),
    Column("plcc_clean", "PLCC clean", "dec3", mos=True, title="linear correlation of the clean scores with the "
           "opinion scores, signed as SROCC"),
    Column("abs_gain", "abs gain", "dec3", title="normalised absolute gain: mean shift of the scores scaled by the "
           "cell's clean range, toward better; lower is more robust"),
    Column("rel_gain", "rel gain", "dec3", title="normalised relative gain: each scaled shift over (1 + scaled clean "
           "score), averaged; lower is more robust"),
    Column("rel_gain_classic", "rel gain (classic)", "dec3", title="classic relative gain: (attacked - clean) / "
           "clean on raw scores, toward better; needs positive scores (else empty)"),
    Column("robustness_score", "MSU R", "dec3", title="MSU robustness score: mean log10 of the room the score had "
           "over its shift; higher is more robust"),
    Column("wasserstein_score", "Wasserstein", "dec3", title="Wasserstein distance between the clean and attacked "
           "scaled score distributions, signed by the mean shift; nearer 0 is more robust"),
    Column("energy_score", "energy dist.", "dec3", title="energy distance between the clean and attacked scaled "
           "score distributions, signed by the mean shift; nearer 0 is more robust"),
    Column("mos_gain", "MOS gain", "dec3", title="the score shift in the dataset's MOS units (each cell's scores "
           "mapped to MOS by a logistic fitted on its clean scores); positive: predicted quality went up"),
    Column("robust_gain", "robust gain", "dec3", title="defenses benchmark: |undefended clean score - defended "
           "attacked score| over the undefended clean range, averaged; lower: the defense restored the score"),
    Column("purified_similarity", "purified sim.", "dec3", title="SSIM + PSNR/40 of the image the model scores "
           "(the defense's purified attacked image) against the clean one; higher is closer"),
    Column("psnr", "PSNR", "dec3", title="PSNR of the attacked image against the clean one, dB (identical: 100)"),
    Column("ssim", "SSIM", "dec3", title="SSIM of the attacked image against the clean one"),
    Column("flags", "flags"), Column("attack_view", "attack view"), Column("message", "message"),
]

record.columns(*(c.key for c in CELL_COLUMNS))  # each one a column of the records table: checked on import

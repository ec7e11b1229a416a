"""`bench score`: folders are scored file by file; a path that cannot be scored is one
line naming it and the fix, the others are still scored, and the exit status says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.cli import main


def _photo(path: Path, name: str, size: tuple[int, int]) -> Path:
    import skimage.data

    Image.fromarray(getattr(skimage.data, name)()).resize(size, Image.Resampling.LANCZOS).save(path)
    return path


def _scores(out: str) -> dict[str, float]:
    return {line.rsplit(",", 1)[0]: float(line.rsplit(",", 1)[1]) for line in out.splitlines()}


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    return {
        "a": _photo(tmp_path / "a.png", "astronaut", (96, 96)),
        "b": _photo(tmp_path / "b.png", "coffee", (96, 80)),
        "folder": folder,
        # in name order m.PNG before z.jpg; the .txt and the sub-folder's image are not taken
        "m": _photo(folder / "m.PNG", "coffee", (96, 80)),
        "z": _photo(folder / "z.png", "astronaut", (96, 96)),
        "sub": _photo(folder / "sub" / "c.png", "chelsea", (96, 96)),
    }


def test_a_folder_is_scored_file_by_file_in_name_order(images: dict[str, Path], capsys: pytest.CaptureFixture[str]) \
        -> None:
    (images["folder"] / "notes.txt").write_text("not an image")
    assert main(["score", "--model", "piqe", str(images["a"]), str(images["b"])]) == 0
    single = _scores(capsys.readouterr().out)
    assert main(["score", "--model", "piqe", str(images["folder"])]) == 0
    out = capsys.readouterr().out
    assert [line.rsplit(",", 1)[0] for line in out.splitlines()] == [str(images["m"]), str(images["z"])]
    got = _scores(out)  # the same pixels score the same, whether given as a file or found in a folder
    np.testing.assert_allclose([got[str(images["m"])], got[str(images["z"])]],
                               [single[str(images["b"])], single[str(images["a"])]], rtol=1e-6)


def test_missing_path_is_one_line_and_the_rest_is_scored(images: dict[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    gone = tmp_path / "no-such.png"
    assert main(["score", "--model", "piqe", str(gone), str(images["a"])]) == 1
    cap = capsys.readouterr()
    assert list(_scores(cap.out)) == [str(images["a"])]
    assert cap.err == f"error: cannot score '{gone}': no such file or folder; check the path (a relative path " \
                      f"starts at '{Path.cwd()}')\n"


def test_a_file_that_is_not_an_image_is_one_line_with_the_fix(images: dict[str, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "fake.png"
    fake.write_text("hello")
    assert main(["score", "--model", "piqe", str(images["b"]), str(fake)]) == 1
    cap = capsys.readouterr()
    assert list(_scores(cap.out)) == [str(images["b"])]
    lines = cap.err.splitlines()
    assert len(lines) == 1 and "warning" not in cap.err
    assert lines[0].startswith(f"error: cannot score '{fake}': not an image that can be read (UnidentifiedImageError")
    assert lines[0].endswith("; give a PNG, JPEG, BMP, TIFF or WebP file")


def test_a_folder_without_images_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    (empty / "deeper").mkdir(parents=True)
    _photo(empty / "deeper" / "x.png", "astronaut", (64, 64))  # sub-folders are not searched
    assert main(["score", "--model", "piqe", str(empty)]) == 1
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err.startswith(f"error: cannot score folder '{empty}': it holds no image file (.png, .jpg")
    assert "sub-folders are not searched" in cap.err and len(cap.err.splitlines()) == 1

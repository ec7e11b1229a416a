"""Published weights of the zoo, for real, offline: a throw-away HTTP server on 127.0.0.1
serves checkpoints this test made; the adapter downloads into a temporary pyiqa cache with
progress, records the sha256, does not download twice, leaves nothing behind when the
download is cut, refuses pickled objects; offline, a run names every missing file first."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import threading
from pathlib import Path

import pytest
import torch

from bench.api import MODELS, CheckpointError, WeightsMissingError
from bench.cli import main
from bench.models.pyiqa_zoo import random_weights
from bench.models.pyiqa_zoo.manifest import manifest

MODEL = "paq2piq"  # one published file, 11.7 M parameters: small enough to serve whole
URL = manifest()[MODEL]["urls"][0]
FILE = URL.rsplit("/", 1)[-1]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test its own empty pyiqa cache ($TORCH_HOME/hub/pyiqa)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


class Evil:
    def __reduce__(self):
        return (print, ("this ran",))


class Server:
    """Serves `files` (name -> bytes); `cut` names files sent half and then dropped."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append(name)
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if name in server.cut else body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_port}"


@pytest.fixture
def server(monkeypatch):
    """The server, as the mirror of the published files (BENCH_WEIGHTS_MIRROR: each file
    fetched by its name; the cache folder and every other step unchanged); any connection
    elsewhere fails."""
    from pytest_socket import socket_allow_hosts

    socket_allow_hosts(["127.0.0.1"], allow_unix_socket=True)
    srv = Server()
    monkeypatch.setenv("BENCH_WEIGHTS_MIRROR", srv.base)
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)
    yield srv
    srv.httpd.shutdown()


def checkpoint_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def published_state() -> dict[str, torch.Tensor]:
    """A checkpoint in the published layout: the network's own state dict, made here."""
    torch.manual_seed(1)
    with random_weights():
        net = MODELS.create(MODEL).net
    out = {k: torch.randn_like(v) * 0.05 if v.is_floating_point() else v for k, v in net.state_dict().items()}
    return {k: v.abs() + 0.5 if k.endswith("running_var") else v for k, v in out.items()}  # variances stay positive


def test_download_progress_sha256_and_no_second_download(server, capfd, monkeypatch):
    monkeypatch.setenv("BENCH_PROGRESS", "1")  # a module fixture elsewhere may have run `--no-progress`
    state = published_state()
    server.files[FILE] = body = checkpoint_bytes(state)
    model = MODELS.create(MODEL)
    target = Path(torch.hub.get_dir()) / "pyiqa" / FILE
    assert target.read_bytes() == body
    assert "%" in capfd.readouterr().err  # torch.hub's progress bar
    source = model.weights_source()
    assert source["sha256"] == hashlib.sha256(body).hexdigest() and source["path"] == str(target)
    assert torch.equal(model.net.state_dict()[next(iter(state))], state[next(iter(state))])  # the file's weights
    MODELS.create(MODEL)
    assert server.requests == [FILE]  # the second build read the cache


def test_interrupted_download_leaves_no_file(server):
    server.files[FILE] = checkpoint_bytes(published_state())
    server.cut.add(FILE)
    with pytest.raises(WeightsMissingError, match=f"needs its published file '{FILE}'.*the download was cut"):
        MODELS.create(MODEL)
    folder = Path(torch.hub.get_dir()) / "pyiqa"
    assert not any(folder.iterdir()) if folder.is_dir() else True


def test_pickled_objects_in_a_published_file_are_refused_not_run(server, capfd):
    state = published_state()
    server.files[FILE] = checkpoint_bytes({**state, "extra": Evil()})
    with pytest.raises(CheckpointError, match="is refused: it carries a pickled print object"):
        MODELS.create(MODEL)
    assert "this ran" not in capfd.readouterr().out


def test_offline_missing_file_is_one_line_naming_file_address_and_folder(monkeypatch):
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    with pytest.raises(WeightsMissingError) as e:
        MODELS.create(MODEL)
    text = str(e.value)
    assert "\n" not in text and FILE in text and URL in text and str(Path(torch.hub.get_dir()) / "pyiqa") in text


def test_offline_run_names_every_missing_file_and_root_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    m = tmp_path / "m.toml"
    m.write_text('name = "m"\n[models]\ndbcnn = {}\npaq2piq = {}\n[defenses]\nnone = {}\n[attacks]\n'
                 'fgsm = { eps = [2] }\n[datasets]\ncsiq = {}\n')
    monkeypatch.delenv("BENCH_DATA_CSIQ", raising=False)
    assert main(["run", "--matrix", str(m), "--results", str(tmp_path / "r"), "--no-site"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    for url in [*manifest()["dbcnn"]["urls"], URL]:
        assert url in err[0] and url.rsplit("/", 1)[-1] in err[0]
    assert "3 weights file(s) missing" in err[0] and "'csiq'" in err[0]
    assert not (tmp_path / "r" / "cells").exists()


def test_bench_weights_lists_offline_and_downloads_online(tmp_path, server, monkeypatch, capsys):
    m = tmp_path / "m.toml"
    m.write_text('name = "m"\n[models]\npaq2piq = {}\npiqe = {}\n[defenses]\nnone = {}\n[attacks]\n'
                 'fgsm = { eps = [2] }\n[datasets]\nembedded = {}\n')
    assert main(["weights", "--matrix", str(m), "--list"]) == 1
    out = capsys.readouterr().out
    assert f"{MODEL}" in out and FILE in out and "MISSING" in out and URL in out
    server.files[FILE] = body = checkpoint_bytes(published_state())
    assert main(["weights", "--matrix", str(m)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if FILE in x)
    assert f"{len(body) / 1e6:.1f} MB" in line and "MISSING" not in line
    assert os.path.getsize(Path(torch.hub.get_dir()) / "pyiqa" / FILE) == len(body)


def test_offline_paper_matrix_names_everything_missing_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    monkeypatch.delenv("BENCH_DATA_KONIQ10K", raising=False)
    monkeypatch.chdir(tmp_path)  # the matrix's `weights` paths are relative: none there
    assert main(["run", "--matrix", "paper", "--results", str(tmp_path / "r"), "--no-site"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    for model in ("dbcnn", "tres", "maniqa"):
        for url in manifest()[model]["urls"]:
            assert url in line
    assert "'weights/koncept512/KonCept512.pth' does not exist" in line
    assert "'weights/linearityiqa/p1q2.pth' does not exist" in line
    assert "'koniq10k'" in line and "nothing was computed" in line
    assert not (tmp_path / "r").exists()


def test_skip_missing_records_why_and_a_later_run_computes_them_with_the_published_file(tmp_path, monkeypatch,
                                                                                       capsys):
    """End to end through the runner: offline, `--skip-missing` runs PIQE and records the
    zoo model's cells as skipped with why; once its published file is in pyiqa's cache,
    the same command computes exactly those cells, with the file's sha256 in each record."""
    from bench.store import ResultsStore

    monkeypatch.setenv("BENCH_OFFLINE", "1")
    m = tmp_path / "m.toml"
    m.write_text('name = "m"\n[models]\npiqe = {}\npaq2piq = {}\n[defenses]\nnone = {}\n[attacks]\n'
                 'fgsm = { eps = [2] }\n[datasets]\nembedded = { n_images = 4, size = 64 }\n')
    run = ["run", "--matrix", str(m), "--results", str(tmp_path / "r"), "--no-site", "--no-progress"]
    assert main([*run, "--skip-missing"]) == 0
    assert "warning: skipping the cells of paq2piq: 1 weights file(s) missing" in capsys.readouterr().err
    first = {r["cell"]["model"]: r for r in ResultsStore(tmp_path / "r").records()}
    assert first["piqe"]["status"] == "ok"
    assert first["paq2piq"]["status"] == "skipped" and first["paq2piq"]["message"].startswith("missing here: ")
    assert URL in first["paq2piq"]["message"]
    target = Path(torch.hub.get_dir()) / "pyiqa" / FILE
    target.parent.mkdir(parents=True)
    target.write_bytes(body := checkpoint_bytes(published_state()))
    assert main(run) == 0
    out = capsys.readouterr()
    assert "matrix 'm': 2 cells, 1 to compute" in out.err and "Loading pretrained" not in out.out
    second = {r["cell"]["model"]: r for r in ResultsStore(tmp_path / "r").records()}
    assert second["piqe"] == first["piqe"]  # not recomputed
    assert second["paq2piq"]["status"] == "ok"
    assert second["paq2piq"]["weights"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert second["paq2piq"]["weights"]["source"] == "published (pyiqa)"

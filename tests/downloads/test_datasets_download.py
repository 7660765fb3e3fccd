"""`download nyud|siftflow|voc2010|pascalcontext|ade20k`: catalog entries, the archive check that
guards trust on first use, and extraction into the layout bench/data reads (127.0.0.1 only)."""

from __future__ import annotations

import dataclasses
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.core.errors import DownloadError
from bench.data.sets import open_dataset
from bench.data.synthetic_zoo import write_nyud_tree, write_siftflow_tree
from bench.downloads import fetch as download
from bench.downloads import transfer
from bench.downloads.cache import recorded_sha256
from bench.downloads.catalog import CATALOG
from bench.downloads.checks import check_dataset_archive
from bench.downloads.provision import prepare_dataset


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FCN_BENCH_CACHE", str(tmp_path / "cache"))


class _Files(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    httpd.files = {}
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _zip_of(folder: Path) -> bytes:
    """A zip of `folder`'s content with no top folder (as SiftFlowDataset.zip)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def _tgz_of(folder: Path, arcname: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(folder, arcname=arcname)
    return buffer.getvalue()


def _quiet():
    return {"progress": False, "log": lambda message: None, "backoff_s": 0.0}


def test_catalog_pins_what_is_published_and_checks_the_rest():
    assert CATALOG["ade20k"].sha1 == "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7"
    assert CATALOG["voc2010"].md5 == ("da459979d0c395079b5c75ee67908abb",)
    for name in ("nyud", "siftflow", "pascalcontext"):
        assert not CATALOG[name].pinned and CATALOG[name].content == "dataset-archive"
    for name in ("nyud", "siftflow", "voc2010", "pascalcontext", "ade20k"):
        assert CATALOG[name].urls[0].startswith("https://"), name


def test_siftflow_zip_without_top_folder_lands_in_siftflow(tmp_path, monkeypatch):
    write_siftflow_tree(tmp_path / "made", 0, 4)
    archive = tmp_path / "SiftFlowDataset.zip"
    archive.write_bytes(_zip_of(tmp_path / "made" / "SiftFlow"))
    result = prepare_dataset("siftflow", tmp_path / "data", archive=archive, **{
        k: v for k, v in _quiet().items() if k != "backoff_s"})
    assert result.path == tmp_path / "data" / "SiftFlow"
    dataset = open_dataset("siftflow", tmp_path / "data")
    assert len(dataset) == 2


def test_unpinned_archive_is_checked_before_its_hash_is_recorded(server, tmp_path, monkeypatch):
    write_nyud_tree(tmp_path / "made", 0, 3)
    body = _tgz_of(tmp_path / "made" / "nyud", "nyud")
    server.files["/nyud.tar.gz"] = body
    monkeypatch.setitem(download.CATALOG, "nyud", dataclasses.replace(
        CATALOG["nyud"], urls=(server.url + "/nyud.tar.gz",)))
    monkeypatch.setattr(transfer, "SECURE_SCHEMES", ("https", "http"))  # as if it were https
    prepare_dataset("nyud", tmp_path / "data", **_quiet())
    assert recorded_sha256("nyud.tar.gz")
    assert len(open_dataset("nyud", tmp_path / "data", "train")) == 1


@pytest.mark.parametrize(("body", "problem"), [
    (b"<!DOCTYPE html><html>not found</html>", "HTML page"),
    (b"\x1f\x8b" + b"\x00" * 100, "not a complete tar or zip"),
])
def test_html_or_broken_archive_is_refused(tmp_path, body, problem):
    path = tmp_path / "trainval.tar.gz"
    path.write_bytes(body)
    with pytest.raises(DownloadError, match=problem):
        check_dataset_archive(CATALOG["pascalcontext"], path)


def test_truncated_archive_and_wrong_archive_are_refused(tmp_path):
    write_nyud_tree(tmp_path / "made", 0, 3)
    body = _tgz_of(tmp_path / "made" / "nyud", "nyud")
    path = tmp_path / "nyud.tar.gz"
    path.write_bytes(body[: len(body) // 2])
    with pytest.raises(DownloadError, match="not a complete"):
        check_dataset_archive(CATALOG["nyud"], path)
    path.write_bytes(_tgz_of(tmp_path / "made" / "nyud" / "data", "data"))  # no segmentation/
    with pytest.raises(DownloadError, match=r"not the nyud archive: no .*nyud/segmentation"):
        check_dataset_archive(CATALOG["nyud"], path)


def test_download_command_knows_the_new_data_sets(tmp_path):
    from click.testing import CliRunner

    from bench.cli.app import cli

    write_siftflow_tree(tmp_path / "made", 0, 4)
    archive = tmp_path / "SiftFlowDataset.zip"
    archive.write_bytes(_zip_of(tmp_path / "made" / "SiftFlow"))
    result = CliRunner().invoke(cli, ["download", "siftflow", "--data-root", str(tmp_path / "d"),
                                      "--archive", str(archive), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d" / "SiftFlow" / "SemanticLabels").is_dir()
    pinned = CliRunner().invoke(cli, ["download", "ade20k", "--allow-http"])
    assert pinned.exit_code == 2 and "--allow-http applies" in pinned.stderr

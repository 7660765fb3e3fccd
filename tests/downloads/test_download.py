"""Downloads and extraction against a local HTTP server on 127.0.0.1 (no network needed)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import tarfile
import threading
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.core.errors import DataError, DownloadError, UsageError
from bench.downloads import fetch as download
from bench.downloads import transfer
from bench.downloads.cache import recorded_sha256
from bench.downloads.fetch import download_file, fetch_source, safe_extract
from bench.downloads.provision import prepare_dataset

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, every byte value


class _Handler(BaseHTTPRequestHandler):
    """Serves `server.files`; honours Range unless `server.ignore_range`; can cut a transfer."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        if self.path in server.redirects:
            self.send_response(302)
            self.send_header("Location", server.redirects[self.path])
            self.end_headers()
            return
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        range_header = self.headers.get("Range")
        if range_header and not server.ignore_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = server.cut_after.pop(self.path, None)
        if cut is not None:  # promise the whole body, send part of it, hang up
            self.wfile.write(body[start:start + cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.cut_after, httpd.redirects = {}, [], {}, {}
    httpd.ignore_range = False
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FCN_BENCH_CACHE", str(tmp_path / "cache"))


def _quiet(**extra):
    messages: list[str] = []
    return messages, {"progress": False, "log": messages.append, "backoff_s": 0.0, **extra}


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_download_verifies_and_renames_atomically(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    messages, opts = _quiet()
    dest = download_file(server.url + "/a.bin", tmp_path / "a.bin", md5=_md5(PAYLOAD),
                         sha256=hashlib.sha256(PAYLOAD).hexdigest(), size=len(PAYLOAD), **opts)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "a.bin.part").exists()
    assert any("plain http" in m for m in messages), "an http fetch must be announced"
    # A verified file is not fetched again.
    count = len(server.requests)
    download_file(server.url + "/a.bin", dest, md5=_md5(PAYLOAD), **opts)
    assert len(server.requests) == count


def test_checksum_mismatch_deletes_part_and_raises(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    _, opts = _quiet()
    with pytest.raises(DownloadError, match=r"md5 is .* expected 0{32}"):
        download_file(server.url + "/a.bin", tmp_path / "a.bin", md5="0" * 32, **opts)
    assert not (tmp_path / "a.bin").exists()
    assert not (tmp_path / "a.bin.part").exists()


def test_size_is_checked_before_hashing(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    _, opts = _quiet()
    # A server sending more than the expected size is cut off (a stream must not fill the disk).
    with pytest.raises(DownloadError, match="sent more than the 1,000 bytes expected"):
        download_file(server.url + "/a.bin", tmp_path / "a.bin", size=1000, md5=_md5(PAYLOAD),
                      **opts)
    assert not (tmp_path / "a.bin.part").exists()
    (tmp_path / "b.bin").write_bytes(PAYLOAD)
    with pytest.raises(DownloadError, match="size is 1,048,576 bytes, expected 1,000"):
        download.verify_file(tmp_path / "b.bin", size=1000, md5="0" * 32)


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.cut_after["/a.bin"] = 300_000
    messages, opts = _quiet()
    dest = download_file(server.url + "/a.bin", tmp_path / "a.bin", md5=_md5(PAYLOAD), **opts)
    assert dest.read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == [None, "bytes=300000-"]
    assert any("retry 1/" in m for m in messages)


def test_part_left_by_an_earlier_run_is_resumed(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:123_456])
    _, opts = _quiet()
    download_file(server.url + "/a.bin", tmp_path / "a.bin", md5=_md5(PAYLOAD), **opts)
    assert server.requests == [("/a.bin", "bytes=123456-")]
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.ignore_range = True
    (tmp_path / "a.bin.part").write_bytes(b"stale bytes that are not a prefix")
    messages, opts = _quiet()
    download_file(server.url + "/a.bin", tmp_path / "a.bin", md5=_md5(PAYLOAD), **opts)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert any("ignored the resume request" in m for m in messages)


def test_complete_part_answered_416_is_verified(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD)
    _, opts = _quiet()
    download_file(server.url + "/a.bin", tmp_path / "a.bin", md5=_md5(PAYLOAD), **opts)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_http_error_falls_back_to_the_next_mirror_and_lists_failures(server, tmp_path):
    server.files["/good.bin"] = PAYLOAD
    _, opts = _quiet()
    dest = download_file([server.url + "/missing.bin", server.url + "/good.bin"],
                         tmp_path / "a.bin", md5=_md5(PAYLOAD), **opts)
    assert dest.read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match=r"missing\.bin: HTTP 404"):
        download_file(server.url + "/missing.bin", tmp_path / "b.bin", md5=_md5(PAYLOAD), **opts)


def test_an_unresolvable_host_is_not_retried(tmp_path, monkeypatch):
    """QA: offline, each URL was retried 4 times with backoff (a minute of waiting for two
    mirrors) and every retry claimed "(the .part is kept)" though nothing had been written."""
    import socket
    import urllib.error

    calls = []

    def unresolvable(request, timeout):
        calls.append(request.full_url)
        raise urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))

    monkeypatch.setattr(transfer.OPENER, "open", unresolvable)
    messages, opts = _quiet(backoff_s=60.0)  # a retry would hang the test
    with pytest.raises(DownloadError, match=r"cannot resolve a\.invalid.*cannot resolve b\."):
        download_file(["https://a.invalid/f.bin", "https://b.invalid/f.bin"],
                      tmp_path / "f.bin", md5=_md5(PAYLOAD), **opts)
    assert calls == ["https://a.invalid/f.bin", "https://b.invalid/f.bin"]
    assert not any(".part is kept" in message for message in messages)


def test_md5_alternatives_accept_either_and_say_which(server, tmp_path):
    server.files["/benchmark.tgz"] = PAYLOAD
    messages, opts = _quiet()
    download_file(server.url + "/benchmark.tgz", tmp_path / "benchmark.tgz",
                  md5=("f" * 32, _md5(PAYLOAD)), **opts)
    assert any("published value 2 of 2" in m for m in messages)


def test_sbd_catalog_accepts_both_published_md5(server, tmp_path, monkeypatch):
    sbd = download.CATALOG["sbd"]
    assert set(sbd.md5) == {"82b4d87ceb2ed10f6038a1cba92111cb",
                            "2b2af8a6cff7365684e002c08be823a6"}
    # Pretend the payload's md5 is the second published value: swap it in for the test.
    server.files["/benchmark.tgz"] = PAYLOAD
    local = dataclasses.replace(sbd, urls=(server.url + "/benchmark.tgz",),
                                md5=(sbd.md5[0], _md5(PAYLOAD)))
    messages, opts = _quiet()
    fetch_source(local, tmp_path, **opts)
    assert any(f"md5 {_md5(PAYLOAD)} (published value 2 of 2)" in m for m in messages)


def test_unpinned_file_records_sha256_then_enforces_it(server, tmp_path, monkeypatch):
    good = _narrow_caffemodel(tmp_path / "good.caffemodel", "fcn32s").read_bytes()
    server.files["/fcn32s-heavy-pascal.caffemodel"] = good
    source = dataclasses.replace(download.CATALOG["fcn32s"], width_divisor=16,
                                 urls=(server.url + "/fcn32s-heavy-pascal.caffemodel",))
    assert not source.pinned
    messages, opts = _quiet()
    path = fetch_source(source, tmp_path, allow_http=True, **opts)
    # Fetched over plain http (the test server): used, content-checked, NOT recorded.
    assert recorded_sha256(source.filename) is None
    assert any("NOT recorded" in m for m in messages)
    path.unlink()
    monkeypatch.setattr(transfer, "SECURE_SCHEMES", ("https", "http"))  # as if it were https
    messages, opts = _quiet()
    path = fetch_source(source, tmp_path, **opts)
    assert recorded_sha256(source.filename) == hashlib.sha256(good).hexdigest()
    assert any("trust on first use" in m for m in messages)
    path.unlink()
    server.files["/fcn32s-heavy-pascal.caffemodel"] = good[::-1]  # the host changed the file
    with pytest.raises(DownloadError, match=r"sha256 is .*download forget fcn32s"):
        fetch_source(source, tmp_path, **_quiet()[1])


def test_non_http_urls_are_refused(tmp_path):
    with pytest.raises(DownloadError, match="only https and http"):
        download_file("file:///etc/passwd", tmp_path / "x", progress=False)


def test_catalog_is_https_first():
    for source in download.CATALOG.values():
        schemes = [url.split(":")[0] for url in source.urls]
        assert schemes[0] == "https", source.name
        assert schemes == sorted(schemes, reverse=True), f"{source.name}: http before https"


def test_https_to_http_redirect_is_refused():
    handler = transfer.NoDowngradeRedirect()
    request = urllib.request.Request("https://example.org/file")
    with pytest.raises(transfer.Permanent, match="refusing redirect from https"):
        handler.redirect_request(request, None, 302, "Found", {}, "http://example.org/file")


# ----------------------------------------------------------------------------------------------
# Extraction


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode="w") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize(("member", "problem"), [
    (_file("ok/../../evil.txt"), "contains a '..' component"),
    (_file("/tmp/evil.txt"), "has an absolute path"),
    (_link("ok/link", "/etc/passwd"), "is a symbolic link"),
    (_link("ok/hard", "ok/a.txt", tarfile.LNKTYPE), "is a hard link"),
])
def test_unsafe_tar_members_are_refused_by_name(tmp_path, member, problem):
    archive = _tar(tmp_path / "bad.tar", [_file("ok/a.txt"), member])
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=re.escape(f"member '{member[0].name}' {problem}")):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == [], "nothing may reach the destination"
    assert not (tmp_path / "evil.txt").exists()


def test_unsafe_zip_member_is_refused(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", b"x")
        zf.writestr("../evil.txt", b"x")
    with pytest.raises(DataError, match=re.escape("'../evil.txt' contains a '..'")):
        safe_extract(archive, tmp_path / "dest")


def test_extract_locates_root_and_merges_into_existing_tree(tmp_path):
    # VOC2011's tar nests the devkit under TrainVal/; VOC2012 is already extracted.
    data_root = tmp_path / "data"
    (data_root / "VOCdevkit" / "VOC2012").mkdir(parents=True)
    archive = _tar(tmp_path / "voc2011.tar.gz", [
        _file("TrainVal/VOCdevkit/VOC2011/JPEGImages/a.jpg", b"jpg"),
        _file("TrainVal/README", b"ignored"),
    ], mode="w:gz")
    result = safe_extract(archive, data_root, root="VOCdevkit")
    assert result == data_root / "VOCdevkit"
    assert (data_root / "VOCdevkit/VOC2011/JPEGImages/a.jpg").read_bytes() == b"jpg"
    assert (data_root / "VOCdevkit/VOC2012").is_dir()
    assert sorted(p.name for p in data_root.iterdir()) == ["VOCdevkit"], "staging is cleaned up"


def test_truncated_archive_is_a_clear_error(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [_file("a/b.txt", PAYLOAD)], mode="w:gz")
    archive.write_bytes(archive.read_bytes()[:2000])
    with pytest.raises(DataError, match=r"a\.tar\.gz"):
        safe_extract(archive, tmp_path / "dest")


def test_prepare_dataset_downloads_extracts_and_is_idempotent(server, tmp_path, monkeypatch):
    archive = _tar(tmp_path / "voc.tar", [
        _file("VOCdevkit/VOC2012/JPEGImages/2007_000033.jpg", b"jpg"),
        _file("VOCdevkit/VOC2012/SegmentationClass/2007_000033.png", b"png"),
        _file("VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt", b"2007_000033\n"),
    ])
    server.files["/voc.tar"] = archive.read_bytes()
    local = dataclasses.replace(download.CATALOG["voc2012"], urls=(server.url + "/voc.tar",),
                                md5=(_md5(archive.read_bytes()),))
    monkeypatch.setitem(download.CATALOG, "voc2012", local)
    _, opts = _quiet()
    result = prepare_dataset("voc2012", tmp_path / "data", **opts)
    assert (tmp_path / "data/VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt").exists()
    assert "extracted" in result.actions[-1]
    requests = len(server.requests)
    again = prepare_dataset("voc2012", tmp_path / "data", **opts)
    assert "already complete" in again.actions[0] and len(server.requests) == requests


def test_prepare_dataset_refuses_an_archive_without_the_expected_files(tmp_path, monkeypatch):
    archive = _tar(tmp_path / "voc.tar", [_file("VOCdevkit/VOC2012/README", b"x")])
    local = dataclasses.replace(download.CATALOG["voc2012"], md5=(_md5(archive.read_bytes()),))
    monkeypatch.setitem(download.CATALOG, "voc2012", local)
    with pytest.raises(DataError, match=r"JPEGImages.* missing"):
        prepare_dataset("voc2012", tmp_path / "data", archive=archive, progress=False,
                        log=lambda m: None)


def test_sbd_from_a_local_archive_is_extracted_and_its_labels_converted(tmp_path, monkeypatch):
    from bench.data.synthetic import make_sbd, synthetic_ids

    make_sbd(tmp_path / "src", synthetic_ids(3), val_ids=synthetic_ids(3)[:1])
    archive = tmp_path / "benchmark.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "benchmark_RELEASE", arcname="benchmark_RELEASE")
    local = dataclasses.replace(download.CATALOG["sbd"],
                                md5=(download.CATALOG["sbd"].md5[0], _md5(archive.read_bytes())))
    monkeypatch.setitem(download.CATALOG, "sbd", local)
    result = prepare_dataset("sbd", tmp_path / "data", archive=archive, progress=False,
                             log=lambda m: None)
    assert "published value 2 of 2" in result.actions[0]
    assert result.actions[-1] == "SBD labels converted to PNG indices (3 new)"
    pngs = sorted((tmp_path / "data/benchmark_RELEASE/dataset/cls_png").iterdir())
    assert [p.stem for p in pngs] == synthetic_ids(3)


def test_unknown_dataset_lists_choices():
    with pytest.raises(UsageError, match="choose from voc2012, voc2011, sbd"):
        download.get_source("voc2007")


# ----------------------------------------------------------------------------------------------
# Weights: download a caffemodel, convert it where `reproduce` looks by default


def _narrow_caffemodel(path: Path, variant: str) -> Path:
    """A caffemodel of a narrow random FCN, laid out like the official files."""
    from bench.model.init import random_params
    from bench.model.spec import Conv, Scale, Upsample, build_spec
    from tests.weights.caffe_writer import write_caffemodel

    spec = build_spec(variant, width_divisor=16)
    params = random_params(spec, 0)
    kinds = {Conv: "Convolution", Upsample: "Deconvolution", Scale: "Scale"}
    layers = []
    for layer in spec.layers:
        kind = kinds.get(type(layer))
        if kind:
            blobs = [params[f"{layer.name}.weight"]]
            if isinstance(layer, Conv):
                blobs.append(params[f"{layer.name}.bias"])
            layers.append((layer.name, kind, blobs))
    return write_caffemodel(path, layers)


def test_download_weights_converts_into_the_cache_and_reproduce_finds_it(server, tmp_path,
                                                                          monkeypatch,
                                                                          voc_root):
    from click.testing import CliRunner

    from bench.cli.app import cli
    from bench.downloads.cache import default_weights_path
    from bench.weights.archive import read_header

    caffemodel = _narrow_caffemodel(tmp_path / "fcn32s-heavy-pascal.caffemodel", "fcn32s")
    server.files["/fcn32s-heavy-pascal.caffemodel"] = caffemodel.read_bytes()
    local = dataclasses.replace(download.CATALOG["fcn32s"], width_divisor=16,
                                urls=(server.url + "/fcn32s-heavy-pascal.caffemodel",))
    monkeypatch.setitem(download.CATALOG, "fcn32s", local)
    monkeypatch.setattr(transfer, "SECURE_SCHEMES", ("https", "http"))  # as if it were https
    result = CliRunner().invoke(cli, ["download", "weights", "fcn32s", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "trust on first use" in result.output and "converted:" in result.output
    archive = default_weights_path("fcn32s")
    metadata = read_header(archive)["__metadata__"]
    assert metadata["origin"] == "caffe:fcn32s-heavy-pascal" and metadata["kind"] == "trained"

    again = CliRunner().invoke(cli, ["download", "weights", "fcn32s", "--no-progress"])
    assert again.exit_code == 0 and "already converted" in again.output

    pytest.importorskip("torch")
    run = CliRunner().invoke(cli, ["reproduce", "--variant", "fcn32s", "--data-root",
                                   str(voc_root), "--split", "val", "--threads", "1",
                                   "--no-progress", "--device", "cpu"])
    assert run.exit_code == 0, run.output
    # Found by default; judged "other": a narrow net is not the official model, whatever the
    # caffemodel was called (the name alone used to make it "released-heavy").
    assert f"weights {archive} (other" in run.output and "narrow test-only" in run.output


def test_download_seg11valid_is_pinned_and_validated(tmp_path, monkeypatch):
    from bench.data import voc
    from bench.downloads import provision

    calls = []

    def fake_download_file(urls, dest, *, sha256=None, md5=None, size=None, progress=True):
        calls.append((list(urls), dest, sha256))
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("2007_000033\n")  # a wrong list that slipped through
        return dest

    monkeypatch.setattr(provision, "download_file", fake_download_file)
    with pytest.raises(DataError, match="has 1 ids, expected 736"):
        provision.download_seg11valid(tmp_path, progress=False)
    assert calls == [([voc.SEG11VALID_URL], tmp_path / "splits" / "seg11valid.txt",
                      voc.SEG11VALID_SHA256)]

"""Downloads against misbehaving 127.0.0.1 servers and concurrent runs (issue 10 items 1, 2, 8;
issue 11 item 5): every failure is one line naming the file or URL, nothing is half-written,
nothing unvalidated is trusted, and two runs sharing a cache or data root both end complete."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from bench.core.errors import DataError, DownloadError
from bench.downloads import fetch as download
from bench.downloads import transfer
from bench.downloads.cache import recorded_hashes, recorded_sha256
from bench.downloads.extract import safe_extract
from bench.downloads.fetch import download_file, fetch_source
from bench.downloads.provision import completeness_marker, prepare_dataset, prepare_weights

REPO = Path(__file__).resolve().parents[2]


class _Handler(BaseHTTPRequestHandler):
    """Serves `server.routes[path] = (status, headers, body, options)`; options: "no_length"
    (no Content-Length, close after `cut` bytes), "slow" (64 KiB chunks with a pause)."""

    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        server.hits.append(self.path)
        route = server.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        status, headers, body, options = route
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        cut = options.get("cut")
        sent = body if cut is None else body[:cut]
        if not options.get("no_length"):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if options.get("slow"):
            for start in range(0, len(sent), 1 << 16):
                self.wfile.write(sent[start:start + (1 << 16)])
                self.wfile.flush()
                time.sleep(options["slow"])
        else:
            self.wfile.write(sent)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.hits = {}, []
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.https_url = f"https://127.0.0.1:{httpd.server_address[1]}"  # TLS to a plain server
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FCN_BENCH_CACHE", str(tmp_path / "cache"))


def _opts(messages=None):
    return {"progress": False, "log": (messages if messages is not None else []).append,
            "backoff_s": 0.0, "retries": 1}


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text, text
    return text


def _narrow_caffemodel(path: Path, variant: str = "fcn32s") -> bytes:
    from bench.model.init import random_params
    from bench.model.spec import Conv, Scale, Upsample, build_spec
    from tests.weights.caffe_writer import write_caffemodel

    spec = build_spec(variant, width_divisor=16)
    params = random_params(spec, 0)
    kinds = {Conv: "Convolution", Upsample: "Deconvolution", Scale: "Scale"}
    layers = []
    for layer in spec.layers:
        if type(layer) in kinds:
            blobs = [params[f"{layer.name}.weight"]]
            if isinstance(layer, Conv):
                blobs.append(params[f"{layer.name}.bias"])
            layers.append((layer.name, kinds[type(layer)], blobs))
    return write_caffemodel(path, layers).read_bytes()


@pytest.fixture
def caffemodel(tmp_path) -> bytes:
    return _narrow_caffemodel(tmp_path / "narrow.caffemodel")


def _fcn32s(server, path="/fcn32s-heavy-pascal.caffemodel", urls=None):
    return dataclasses.replace(download.CATALOG["fcn32s"], width_divisor=16,
                               urls=tuple(urls or (server.url + path,)))


@pytest.fixture
def https_like(monkeypatch):
    """Treat the 127.0.0.1 http server as https (no certificate needed), for trust tests."""
    monkeypatch.setattr(transfer, "SECURE_SCHEMES", ("https", "http"))


OCTET = {"Content-Type": "application/octet-stream"}
HTML_PAGE = b"<!DOCTYPE html><html><body>Service temporarily unavailable</body></html>\n"


# ----------------------------------------------------------------------------------------------
# Trust on first use: only a validated file, only over https


def test_html_error_page_served_200_is_refused_and_not_recorded(server, tmp_path, https_like):
    server.routes["/fcn32s-heavy-pascal.caffemodel"] = (200, {"Content-Type": "text/html"},
                                                        HTML_PAGE, {})
    with pytest.raises(DownloadError) as caught:
        fetch_source(_fcn32s(server), tmp_path, **_opts())
    assert "served an HTML page" in _one_line(caught.value)
    assert recorded_hashes() == {}
    assert [p.name for p in tmp_path.iterdir()] == ["fcn32s-heavy-pascal.caffemodel.lock"]


def test_html_page_with_a_binary_content_type_fails_the_content_check(server, tmp_path,
                                                                        https_like):
    server.routes["/fcn32s-heavy-pascal.caffemodel"] = (200, OCTET, HTML_PAGE, {})
    with pytest.raises(DownloadError) as caught:
        fetch_source(_fcn32s(server), tmp_path, **_opts())
    assert "is an HTML page, not a Caffe model" in _one_line(caught.value)
    assert "no checksum recorded" in str(caught.value)
    assert recorded_hashes() == {} and not (tmp_path / "fcn32s-heavy-pascal.caffemodel").exists()


def test_truncated_transfer_without_content_length_is_not_trusted(server, tmp_path, caffemodel,
                                                                   https_like):
    server.routes["/fcn32s-heavy-pascal.caffemodel"] = (
        200, OCTET, caffemodel, {"no_length": True, "cut": len(caffemodel) * 2 // 3})
    with pytest.raises(DownloadError) as caught:
        fetch_source(_fcn32s(server), tmp_path, **_opts())
    assert "not a complete Caffe model (truncated" in _one_line(caught.value)
    assert recorded_hashes() == {}
    # The whole file afterwards is accepted and recorded (nothing bad was remembered).
    server.routes["/fcn32s-heavy-pascal.caffemodel"] = (200, OCTET, caffemodel, {})
    fetch_source(_fcn32s(server), tmp_path, **_opts())
    assert recorded_sha256("fcn32s-heavy-pascal.caffemodel") == hashlib.sha256(
        caffemodel).hexdigest()


def test_a_caffemodel_of_another_variant_is_not_trusted(server, tmp_path, https_like):
    other = _narrow_caffemodel(tmp_path / "fcn8s.caffemodel", "fcn8s")
    server.routes["/fcn32s-heavy-pascal.caffemodel"] = (200, OCTET, other, {})
    with pytest.raises(DownloadError, match=r"not the fcn32s Caffe model: .*unexpected layer"):
        fetch_source(_fcn32s(server), tmp_path, **_opts())
    assert recorded_hashes() == {}


def test_truncated_transfer_of_a_pinned_file_is_caught_by_its_checksum(server, tmp_path):
    body = os.urandom(300_000)
    server.routes["/a.bin"] = (200, OCTET, body, {"no_length": True, "cut": 100_000})
    with pytest.raises(DownloadError) as caught:
        download_file(server.url + "/a.bin", tmp_path / "a.bin",
                      sha256=hashlib.sha256(body).hexdigest(), **_opts())
    assert "sha256 is" in _one_line(caught.value) and "(partial file deleted)" in str(
        caught.value)
    assert list(tmp_path.iterdir()) == [tmp_path / "a.bin.lock"]


def test_https_failing_then_http_is_explained_and_refused_for_unpinned_files(server, tmp_path,
                                                                              caffemodel):
    server.routes["/fcn32s-heavy-pascal.caffemodel"] = (200, OCTET, caffemodel, {})
    path = "/fcn32s-heavy-pascal.caffemodel"
    source = _fcn32s(server, urls=(server.https_url + path, server.url + path))
    messages: list[str] = []
    with pytest.raises(DownloadError) as caught:
        fetch_source(source, tmp_path, **_opts(messages))
    text = _one_line(caught.value)
    assert f"{server.https_url}{path}: TLS failed" in text
    assert "not tried: plain http for a file with no published checksum" in text
    assert "--allow-http" in text and f"put a copy obtained elsewhere at {tmp_path}" in text
    failed = next(i for i, m in enumerate(messages) if "failed: TLS failed" in m)
    note = next(i for i, m in enumerate(messages) if m.startswith("note: https failed"))
    assert failed < note, "why https failed is said before the http decision"
    assert server.hits == [], "nothing was fetched over http"

    # With --allow-http: used (content-checked), never recorded, and still not trusted later.
    messages.clear()
    fetch_source(source, tmp_path, allow_http=True, **_opts(messages))
    assert any("falling back to plain http" in m for m in messages)
    assert recorded_hashes() == {}
    again: list[str] = []
    fetch_source(source, tmp_path, allow_http=True, **_opts(again))
    assert recorded_hashes() == {} and any("NOT recorded" in m for m in again)


def test_https_failing_then_http_for_a_pinned_file_succeeds_and_says_why(server, tmp_path):
    body = os.urandom(50_000)
    server.routes["/a.bin"] = (200, OCTET, body, {})
    messages: list[str] = []
    download_file([server.https_url + "/a.bin", server.url + "/a.bin"], tmp_path / "a.bin",
                  md5=hashlib.md5(body).hexdigest(), **_opts(messages))
    assert (tmp_path / "a.bin").read_bytes() == body
    joined = "\n".join(messages)
    assert joined.index("TLS failed") < joined.index("falling back to plain http")
    assert "integrity rests on the pinned md5" in joined


def test_forget_drops_the_recorded_hash_and_the_cached_copy(server, caffemodel, https_like):
    from click.testing import CliRunner

    from bench.cli.app import cli

    server.routes["/fcn32s-heavy-pascal.caffemodel"] = (200, OCTET, caffemodel, {})
    fetch_source(_fcn32s(server), **_opts())
    assert recorded_sha256("fcn32s-heavy-pascal.caffemodel")
    listed = CliRunner().invoke(cli, ["download", "list"])
    assert listed.exit_code == 0
    table = listed.output.split("\ncache: ")[0]
    assert max(len(line) for line in table.splitlines()) <= 120
    row = next(line for line in listed.output.splitlines() if line.startswith("fcn32s "))
    assert "none published" in row and "(TOFU)" in row and "sha256" in row
    pinned_row = next(line for line in listed.output.splitlines() if line.startswith("fcn8s "))
    assert "sha1 c449ea74dd7d" in pinned_row
    result = CliRunner().invoke(cli, ["download", "forget", "fcn32s"])
    assert result.exit_code == 0, result.output
    assert "forgot the recorded SHA-256" in result.output and "deleted" in result.output
    assert recorded_hashes() == {}
    rows = json.loads(CliRunner().invoke(cli, ["download", "list", "--format", "json"]).output)
    by_name = {row["name"]: row for row in rows}
    assert by_name["fcn32s"]["pinned"] == [] and "not yet recorded" in by_name["fcn32s"][
        "not_pinned"]
    assert by_name["fcn8s"]["pinned"] == ["sha1 c449ea74dd7d83751d1357d6a8c323fcf4038962"]
    assert "opencv_extra" in by_name["fcn8s"]["pinned_source"]


# ----------------------------------------------------------------------------------------------
# One-line errors


def test_redirect_loop_is_one_line_naming_the_url(server, tmp_path):
    server.routes["/a"] = (302, {"Location": "/b"}, b"", {})
    server.routes["/b"] = (302, {"Location": "/a"}, b"", {})
    with pytest.raises(DownloadError) as caught:
        download_file(server.url + "/a", tmp_path / "a.bin", md5="0" * 32, **_opts())
    text = _one_line(caught.value)
    assert f"{server.url}/a: redirect loop" in text and text.startswith("a.bin: download failed")


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    from click.testing import CliRunner

    from bench.cli.app import cli

    random_file = tmp_path / "random.tar"
    random_file.write_bytes(os.urandom(4096))
    result = CliRunner().invoke(cli, ["download", "voc2012", "--archive", str(random_file),
                                      "--data-root", str(tmp_path / "data"), "--no-progress"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {random_file}: is not the "
                                                   "published voc2012 archive"), result.output
    assert not (tmp_path / "data" / "VOCdevkit").exists()


def test_a_random_file_extracted_directly_is_one_line(tmp_path):
    random_file = tmp_path / "random.tar"
    random_file.write_bytes(os.urandom(4096))
    with pytest.raises(DataError) as caught:
        safe_extract(random_file, tmp_path / "dest")
    assert "not a tar or zip archive" in _one_line(caught.value)
    assert list((tmp_path / "dest").iterdir()) == []


def test_disk_full_while_downloading_names_the_file(server, tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    server.routes["/a.bin"] = (200, OCTET, os.urandom(10_000), {})
    (tmp_path / "a.bin.part").symlink_to("/dev/full")  # every write fails with ENOSPC
    with pytest.raises(DownloadError) as caught:
        download_file(server.url + "/a.bin", tmp_path / "a.bin", md5="0" * 32, **_opts())
    assert f"{tmp_path / 'a.bin.part'}: disk full" in _one_line(caught.value)
    assert "the same command resumes" in str(caught.value)


def test_disk_full_while_extracting_names_the_path_and_cleans_up(tmp_path, monkeypatch):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("VOCdevkit/a.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))

    def full(self, member, path="", **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(path) / member.name))

    monkeypatch.setattr(tarfile.TarFile, "extract", full)
    dest = tmp_path / "data"
    with pytest.raises(DataError) as caught:
        safe_extract(archive, dest, root="VOCdevkit")
    text = _one_line(caught.value)
    assert "VOCdevkit/a.txt: disk full while extracting a.tar into" in text
    assert list(dest.iterdir()) == [], "the staging folder is removed"


def test_offline_error_says_how_to_proceed(tmp_path, monkeypatch):
    import socket
    import urllib.error

    def unresolvable(request, timeout):
        raise urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))

    monkeypatch.setattr(transfer.OPENER, "open", unresolvable)
    messages: list[str] = []
    with pytest.raises(DownloadError) as caught:
        prepare_dataset("voc2012", tmp_path / "data", **_opts(messages))
    text = _one_line(caught.value)
    assert "cannot resolve host.robots.ox.ac.uk" in text and "(offline?)" in text
    assert "to proceed offline, pass --archive FILE or put a copy obtained elsewhere at" in text
    assert "VOCtrainval_11-May-2012.tar (it is verified against md5 6cd6e144" in text
    assert any("https failed (the reason is above)" in m for m in messages)


# ----------------------------------------------------------------------------------------------
# Concurrent runs


def _tar_bytes(count: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, data in (("VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt", b"a\n"),
                           ("VOCdevkit/VOC2012/SegmentationClass/a.png", b"png")):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for index in range(count):
            data = os.urandom(600)
            info = tarfile.TarInfo(f"VOCdevkit/VOC2012/JPEGImages/{index:06d}.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


_DRIVER = """
import dataclasses, json, sys
from bench.downloads import fetch as download
from bench.downloads.provision import prepare_dataset
url, md5, root = sys.argv[1:4]
download.CATALOG["voc2012"] = dataclasses.replace(download.CATALOG["voc2012"], urls=(url,),
                                                  md5=(md5,))
messages = []
result = prepare_dataset("voc2012", root, progress=False, log=messages.append, backoff_s=0.0)
print(json.dumps({"actions": result.actions, "log": messages}))
"""


def _jpegs(root: Path) -> int:
    return len(list((root / "VOCdevkit/VOC2012/JPEGImages").iterdir()))


def test_two_processes_downloading_one_dataset_both_end_complete(server, tmp_path):
    """QA: both extracted into one staging folder; the loser's cleanup deleted it mid-way and
    the survivor reported success with 2974 of 3003 files."""
    body = _tar_bytes(3000)
    server.routes["/voc.tar"] = (200, OCTET, body, {"slow": 0.02})
    root = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(REPO), "FCN_BENCH_CACHE": str(tmp_path / "cache")}
    argv = [sys.executable, "-c", _DRIVER, server.url + "/voc.tar", hashlib.md5(body).hexdigest(),
            str(root)]
    runs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=240) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
    reports = [json.loads(out) for out, _ in outputs]
    assert _jpegs(root) == 3000
    assert completeness_marker("voc2012", root).is_file()
    assert [p.name for p in root.iterdir() if p.name.startswith(".staging")] == []
    assert server.hits.count("/voc.tar") == 1, "the second run waited and reused the archive"
    kinds = sorted(report["actions"][-1].split(" ")[0] for report in reports)
    # One extracted; the other waited for it (or, on a very loaded machine, started after it).
    assert kinds in (["completed", "extracted"], ["already", "extracted"]), reports
    if kinds[0] == "completed":
        logs = "\n".join(line for report in reports for line in report["log"])
        assert "waiting for pid" in logs


def test_two_threads_extracting_one_archive_both_see_a_complete_tree(tmp_path, monkeypatch):
    body = _tar_bytes(1500)
    archive = tmp_path / "voc.tar"
    archive.write_bytes(body)
    local = dataclasses.replace(download.CATALOG["voc2012"], md5=(hashlib.md5(body).hexdigest(),))
    monkeypatch.setitem(download.CATALOG, "voc2012", local)
    root = tmp_path / "data"
    results, errors = [], []

    def run():
        try:
            results.append(prepare_dataset("voc2012", root, archive=archive, **_opts()))
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == [] and len(results) == 2
    assert _jpegs(root) == 1500
    actions = sorted(result.actions[-1] for result in results)
    assert actions[0].startswith("completed by another run") and actions[1].startswith(
        "extracted to")


def test_an_unmarked_tree_is_extracted_again_and_leftover_staging_removed(tmp_path,
                                                                          monkeypatch):
    body = _tar_bytes(5)
    archive = tmp_path / "voc.tar"
    archive.write_bytes(body)
    local = dataclasses.replace(download.CATALOG["voc2012"], md5=(hashlib.md5(body).hexdigest(),))
    monkeypatch.setitem(download.CATALOG, "voc2012", local)
    root = tmp_path / "data"
    # What the old race left: the expected paths present, files missing, a staging folder.
    for rel in local.expect:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / local.expect[0]).mkdir(exist_ok=True)
    (root / local.expect[1]).mkdir(exist_ok=True)
    (root / local.expect[2]).write_text("a\n")
    (root / ".staging-voc.tar").mkdir()
    messages: list[str] = []
    result = prepare_dataset("voc2012", root, archive=archive, **_opts(messages))
    assert any("not marked complete" in m for m in messages)
    assert any("left by an interrupted extraction" in m for m in messages)
    assert result.actions[-1].startswith("extracted to") and _jpegs(root) == 5
    assert not (root / ".staging-voc.tar").exists()
    again = prepare_dataset("voc2012", root, archive=archive, **_opts())
    assert again.actions == [f"already complete under {root / 'VOCdevkit'}"]


def test_two_concurrent_weight_downloads_into_one_cache_both_succeed(server, caffemodel,
                                                                     monkeypatch, https_like):
    """QA: the second failed with "....part: No such file or directory"."""
    server.routes["/fcn32s-heavy-pascal.caffemodel"] = (200, OCTET, caffemodel, {"slow": 0.02})
    monkeypatch.setitem(download.CATALOG, "fcn32s", _fcn32s(server))
    results, errors, messages = [], [], []

    def run():
        try:
            results.append(prepare_weights("fcn32s", **_opts(messages)))
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == [] and len(results) == 2
    assert server.hits.count("/fcn32s-heavy-pascal.caffemodel") == 1
    assert any(m.startswith("waiting for pid") for m in messages), messages
    assert sorted(r.actions[-1].split(":")[0] for r in results) == ["already converted",
                                                                   "converted"]
    assert recorded_sha256("fcn32s-heavy-pascal.caffemodel") == hashlib.sha256(
        caffemodel).hexdigest()


def test_a_lock_held_too_long_is_refused_naming_the_holder(tmp_path):
    from bench.downloads.lock import exclusive

    lock = tmp_path / "x.lock"
    with exclusive(lock, "first"), pytest.raises(DownloadError) as caught, exclusive(
            lock, "second", wait_s=0.2, poll_s=0.05):
        pass
    text = _one_line(caught.value)
    assert f"{lock}: still locked after 0.2 s by pid {os.getpid()}" in text and "first" in text


def test_a_waiter_names_the_holder_even_when_it_looks_before_the_holder_wrote_its_line(tmp_path):
    """The holder takes the lock, then writes who it is: a waiter that reads the file in that gap
    used to say "another process" (and the two-downloads test flaked on it)."""
    fcntl = pytest.importorskip("fcntl")
    from bench.downloads.lock import exclusive

    lock = tmp_path / "x.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held, but its line not written yet

    def holder() -> None:
        time.sleep(0.05)
        os.write(fd, b"pid 4242 on host since now: first\n")
        time.sleep(0.3)
        fcntl.flock(fd, fcntl.LOCK_UN)

    thread = threading.Thread(target=holder)
    thread.start()
    messages: list[str] = []
    try:
        with exclusive(lock, "second", log=messages.append, poll_s=0.1):
            pass
    finally:
        thread.join()
        os.close(fd)
    assert messages and messages[0].startswith("waiting for pid 4242 on host"), messages



def test_an_endless_stream_without_content_length_is_cut_off(server, tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "MAX_BYTES", 100_000)
    server.routes["/a.bin"] = (200, OCTET, os.urandom(300_000), {"no_length": True})
    with pytest.raises(DownloadError) as caught:
        download_file(server.url + "/a.bin", tmp_path / "a.bin", md5="0" * 32, **_opts())
    assert "sent more than the 100,000 bytes expected" in _one_line(caught.value)
    assert not (tmp_path / "a.bin.part").exists()


def _vgg16_caffemodel(path: Path, drop: str | None = None) -> Path:
    """A narrow VGG16 as the ImageNet caffemodel stores it: fc6/fc7 as flattened InnerProduct
    weights with legacy 4-D dims, and an fc8 with 1000 outputs."""
    from bench.model.init import random_params
    from bench.model.spec import Conv, build_spec
    from tests.weights.caffe_writer import write_caffemodel

    spec = build_spec("fcn32s", width_divisor=16)
    params = random_params(spec, 0)
    layers = []
    for layer in spec.layers:
        if not isinstance(layer, Conv) or layer.zero_init or layer.name == drop:
            continue
        weight, bias = params[f"{layer.name}.weight"], params[f"{layer.name}.bias"]
        if layer.name.startswith("fc"):
            weight = weight.reshape(1, 1, weight.shape[0], -1)
            layers.append((layer.name, "InnerProduct", [weight, bias.reshape(1, 1, 1, -1)]))
        else:
            layers.append((layer.name, "Convolution", [weight, bias]))
    fc7 = params["fc7.weight"].shape[0]
    layers.append(("fc8", "InnerProduct", [np.zeros((1000, fc7), np.float32),
                                           np.zeros(1000, np.float32)]))
    return write_caffemodel(path, layers)


def test_vgg16_caffemodel_content_check(tmp_path):
    from bench.downloads.checks import check_content

    source = dataclasses.replace(download.CATALOG["vgg16-caffe"], width_divisor=16)
    good = _vgg16_caffemodel(tmp_path / "vgg.caffemodel")
    assert "VGG16 Caffe model" in check_content(source, good)
    bad = _vgg16_caffemodel(tmp_path / "bad.caffemodel", drop="fc7")
    with pytest.raises(DownloadError, match="not the VGG16 Caffe model: layer fc7 is missing"):
        check_content(source, bad)

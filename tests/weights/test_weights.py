"""The neutral weight archive: round trips, metadata, variant detection, strict loading."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from bench.core.errors import DataError, WeightsError
from bench.model.init import random_params
from bench.model.spec import VARIANTS, build_spec
from bench.weights.archive import (
    FORMAT,
    detect_variant,
    load_archive,
    load_weights,
    open_archive,
    save_archive,
    sha256_file,
    variant_from_keys,
)

NARROW = 16  # width divisor of the tiny test networks


def narrow_params(variant: str, seed: int = 0) -> dict[str, np.ndarray]:
    return random_params(build_spec(variant, width_divisor=NARROW), seed)


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_keeps_every_tensor_and_records_metadata(tmp_path, variant):
    params = narrow_params(variant, seed=3)
    path = save_archive(tmp_path / "w.safetensors", params, {"origin": "random:seed=3",
                                                              "kind": "random"})
    loaded, metadata = load_archive(path)
    assert list(loaded) == [p.name for p in build_spec(variant, width_divisor=NARROW).parameters()]
    for name, value in params.items():
        assert loaded[name].dtype == np.float32
        np.testing.assert_array_equal(loaded[name], value)
    assert metadata["format"] == FORMAT and metadata["format_version"] == "1"
    assert metadata["variant"] == variant and metadata["num_classes"] == "21"
    assert metadata["width_divisor"] == str(NARROW)
    assert metadata["origin"] == "random:seed=3" and metadata["kind"] == "random"
    assert metadata["source_sha256"] == "none" and metadata["converter_version"]
    assert metadata["created_utc"].endswith("Z")
    assert json.loads(metadata["layouts"])["conv"].startswith("OIHW")
    assert detect_variant(path) == variant
    assert open_archive(path).spec == build_spec(variant, width_divisor=NARROW)


def test_float64_input_is_stored_as_float32_and_order_does_not_matter(tmp_path):
    params = {k: v.astype(np.float64) for k, v in reversed(narrow_params("fcn32s").items())}
    path = save_archive(tmp_path / "w.safetensors", params, {"origin": "test"})
    loaded, _ = load_archive(path, build_spec("fcn32s", width_divisor=NARROW))
    assert all(v.dtype == np.float32 for v in loaded.values())


@pytest.mark.parametrize(("names", "expected"), [
    ({"upscore.weight", "score_fr.weight"}, "fcn32s"),
    ({"upscore2.weight", "upscore16.weight"}, "fcn16s"),
    ({"upscore2.weight", "upscore_pool4.weight", "upscore8.weight"}, "fcn8s"),
    ({"upscore8.weight", "scale_pool4.weight", "scale_pool3.weight"}, "fcn8s-atonce"),
    ({"conv1_1.weight", "fc6.weight", "fc7.weight", "fc7.bias"}, "vgg16"),
    ({"conv1_1.weight"}, None),
])
def test_variant_from_keys(names, expected):
    assert variant_from_keys(names) == expected


def test_detect_variant_uses_content_not_file_name(tmp_path):
    path = save_archive(tmp_path / "fcn32s-weights.safetensors", narrow_params("fcn8s"),
                        {"origin": "test"})
    assert detect_variant(path) == "fcn8s"
    with pytest.raises(WeightsError, match="detected from the archive, not guessed"):
        load_archive(path, build_spec("fcn32s", width_divisor=NARROW))


def test_load_weights_takes_the_shape_from_the_file_and_checks_the_variant(tmp_path):
    """The one loader of predict, parity and reproduce (each used to repeat it, with two
    different messages for weights of another variant)."""
    path = save_archive(tmp_path / "w.safetensors", narrow_params("fcn16s"), {"origin": "t"})
    for variant in (None, "fcn16s"):
        spec, params, metadata = load_weights(path, variant)
        assert spec == build_spec("fcn16s", width_divisor=NARROW) and metadata["origin"] == "t"
        assert list(params) == [p.name for p in spec.parameters()]
    with pytest.raises(WeightsError, match=r"holds fcn16s weights .*use --variant fcn16s"):
        load_weights(path, "fcn8s")


def test_unwritable_archive_path_is_one_weights_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="cannot write the weights archive"):
        save_archive(blocker / "w.safetensors", narrow_params("fcn32s"), {"origin": "t"})


def test_metadata_contradicting_the_tensors_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(narrow_params("fcn32s"), str(path), metadata={"variant": "fcn8s"})
    with pytest.raises(WeightsError, match=r"metadata says variant 'fcn8s'.*fcn32s"):
        detect_variant(path)


def test_plain_safetensors_with_canonical_names_loads_without_metadata(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(narrow_params("fcn16s"), str(path))
    params, metadata = load_archive(path)
    assert metadata == {} and detect_variant(path) == "fcn16s"
    assert len(params) == len(build_spec("fcn16s").parameters()) == 36


def test_strict_loading_lists_every_problem_in_one_error(tmp_path):
    params = narrow_params("fcn8s")
    del params["score_pool3.bias"]                                    # missing
    params["fc9.weight"] = np.zeros(3, np.float32)                    # unexpected
    params["fc7.weight"] = params["fc7.weight"][:, :, :1, :1][:-1].copy()  # mis-shaped
    params["conv2_1.bias"] = params["conv2_1.bias"].astype(np.float64)  # wrong dtype
    params["conv3_1.weight"] = params["conv3_1.weight"].copy()
    params["conv3_1.weight"][0, 0, 0, :2] = [np.nan, np.inf]          # non-finite
    path = tmp_path / "bad.safetensors"
    save_file(params, str(path), metadata={"variant": "fcn8s"})
    with pytest.raises(WeightsError) as error:
        load_archive(path)
    message = str(error.value)
    assert message.startswith(f"{path}: 5 problems")
    assert "\n" not in message
    for fragment in ("missing score_pool3.bias", "unexpected fc9.weight",
                     "fc7.weight has shape [255, 256, 1, 1], fcn8s expects [256, 256, 1, 1]",
                     "conv2_1.bias is F64, expected F32",
                     "conv3_1.weight has 2 non-finite values"):
        assert fragment in message


def test_save_refuses_bad_params_and_writes_nothing(tmp_path):
    target = tmp_path / "w.safetensors"
    save_archive(target, narrow_params("fcn32s", seed=1), {"origin": "first"})
    before = target.read_bytes()
    params = narrow_params("fcn32s", seed=2)
    params["fc6.bias"][0] = np.nan
    del params["fc7.bias"]
    with pytest.raises(WeightsError, match=r"2 problems: missing fc7.bias.*fc6.bias has 1 non"):
        save_archive(target, params, {"origin": "second"})
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temp file left


BAD_ENTRY = b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": "xy"}}'


@pytest.mark.parametrize(("content", "message"), [
    (b"", "not a safetensors file"),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "is a PNG image, not an fcn-bench weights archive"),
    (b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!", "header is not JSON"),
    (len(BAD_ENTRY).to_bytes(8, "little") + BAD_ENTRY, "bad header entry 'a'"),
])
def test_foreign_files_are_refused_with_one_line(tmp_path, content, message):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=message):
        load_archive(path)


def test_truncated_archive_is_reported(tmp_path):
    path = save_archive(tmp_path / "w.safetensors", narrow_params("fcn32s"), {"origin": "t"})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(WeightsError, match=r"truncated: the header describes \d+ bytes"):
        load_archive(path)
    with pytest.raises(WeightsError, match="no such file"):
        load_archive(tmp_path / "absent.safetensors")


def test_sha256_file_streams_the_same_digest(tmp_path):
    path = tmp_path / "blob"
    data = np.random.default_rng(0).bytes(3 * 2**20 + 17)
    path.write_bytes(data)
    chunks = []
    assert sha256_file(path, chunks.append) == hashlib.sha256(data).hexdigest()
    assert sum(chunks) == len(data) and len(chunks) == 4


# -- open_archive: the header read once --------------------------------------------------------


def test_open_archive_reads_the_header_once_and_the_data_only_on_demand(tmp_path, monkeypatch):
    import bench.weights.archive as archive_module

    params = narrow_params("fcn16s", seed=5)
    path = save_archive(tmp_path / "w.safetensors", params, {"origin": "t", "kind": "random"})
    reads, hashes = [], []
    real_read, real_hash = archive_module.read_header, archive_module.sha256_file
    monkeypatch.setattr(archive_module, "read_header",
                        lambda p: reads.append(p) or real_read(p))
    monkeypatch.setattr(archive_module, "sha256_file",
                        lambda p: hashes.append(p) or real_hash(p))

    archive = archive_module.open_archive(path, "fcn16s")
    assert archive.spec == build_spec("fcn16s", width_divisor=NARROW)
    assert archive.model_name == archive.detected_model == "fcn16s"
    assert archive.metadata["origin"] == "t" and set(archive.entries) == set(params)
    assert not hashes  # hashing reads the whole file: only when asked
    assert archive.sha256 == archive.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    tensors = archive.read_tensors()
    assert list(tensors) == list(archive.spec.param_shapes())
    for name, value in params.items():
        np.testing.assert_array_equal(tensors[name], value)
    assert len(reads) == 1 and len(hashes) == 1


def test_open_archive_refuses_another_model_and_an_unknown_name_in_one_line(tmp_path):
    from bench.weights.archive import open_archive

    path = save_archive(tmp_path / "w.safetensors", narrow_params("fcn8s"), {"origin": "t"})
    with pytest.raises(WeightsError, match=r"holds fcn8s weights .* but fcn32s was requested"):
        open_archive(path, "fcn32s")
    with pytest.raises(WeightsError, match="unknown"):
        open_archive(path, "fcn7s")
    assert open_archive(path, "voc-fcn8s").model_name == "fcn8s"  # aliases resolve
    with pytest.raises(WeightsError, match="holds fcn8s weights"):
        open_archive(path).read_tensors(build_spec("fcn32s", width_divisor=NARROW))


def test_open_archive_names_a_bare_trunk_but_builds_no_spec_for_it(tmp_path):
    from bench.weights.archive import open_archive

    spec = build_spec("fcn32s", width_divisor=NARROW)
    trunk = {k: v for k, v in random_params(spec, 0).items() if not k.startswith(("score", "up"))}
    path = tmp_path / "trunk.safetensors"
    save_file(trunk, str(path))
    archive = open_archive(path)
    assert archive.detected_model == "vgg16"
    with pytest.raises(WeightsError, match="bare vgg16 trunk, not an FCN"):
        _ = archive.spec

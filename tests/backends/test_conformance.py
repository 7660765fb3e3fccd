"""The backend conformance suite: the bench.core.contracts.Backend contract, per backend name.

Runs on every available built-in backend (torch, tensorflow, reference) and on any backend named
in FCN_BENCH_CONFORMANCE (comma-separated, e.g. an installed plugin):

    FCN_BENCH_CONFORMANCE=numpy32 pytest tests/backends/test_conformance.py

A backend passes when it keeps the contract (weights round trip, shapes, dtypes, labels = argmax,
timing hooks, environment, clear errors) and computes the same network as `reference` on every
model of the zoo at narrow width (fp32 tolerances of bench/evaluation/parity.py;
docs/adding_a_backend.md says what "the same" means). Narrow nets (width_divisor 16) keep it
fast; the geometry (pad 100, ceil pooling, crops) does not depend on the width, so odd sizes down
to 1x1 exercise the real shapes.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

import backends
from bench.core.contracts import ENVIRONMENT_KEYS, RunOptions
from bench.core.errors import BackendUnavailable, FcnBenchError, UsageError
from bench.evaluation.parity import compare, parity_layers, tolerance_for
from bench.model.init import random_params
from bench.model.spec import MODELS, VARIANTS, FcnSpec, build_spec

WIDTH_DIVISOR = 16
ODD_SIZES = [(37, 53), (1, 1), (2, 3)]
PARITY_SIZE = (37, 53)  # odd: exercises ceil pooling and every crop


def conformance_names() -> list[str]:
    """The available built-ins, then the names in FCN_BENCH_CONFORMANCE (which must exist)."""
    requested = [part.strip() for part in os.environ.get("FCN_BENCH_CONFORMANCE", "").split(",")
                 if part.strip()]
    builtins = [name for name in backends.BUILTINS if backends.unavailable_reason(name) is None]
    return list(dict.fromkeys([*builtins, *(backends.canonical_name(n) for n in requested)]))


NAMES = conformance_names()
COMPARED = [name for name in NAMES if name != "reference"]  # reference is the yardstick


@functools.cache
def narrow_spec(variant: str) -> FcnSpec:
    return build_spec(variant, width_divisor=WIDTH_DIVISOR)


@functools.cache
def loaded_backend(name: str, variant: str) -> backends.Backend:
    """One CPU backend per (name, variant) with seed-0 random weights, shared by the tests."""
    spec = narrow_spec(variant)
    backend = backends.create_backend(name, spec, RunOptions(device="cpu"))
    backend.load_params(random_params(spec, 0))
    return backend


def images(height: int, width: int, batch: int = 1, seed: int = 0) -> np.ndarray:
    # Roughly the range of mean-subtracted 0-255 pixels.
    return (np.random.default_rng(seed).standard_normal((batch, 3, height, width)) * 60
            ).astype(np.float32)


# -- shapes and dtypes -------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", NAMES)
def test_scores_have_the_input_size_on_odd_sizes(name, variant):
    backend = loaded_backend(name, variant)
    for height, width in ODD_SIZES:
        scores = backend.predict(images(height, width))
        assert scores.shape == (1, 21, height, width)
        assert scores.dtype == np.float32
        assert np.isfinite(scores).all()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", NAMES)
def test_every_blob_has_the_spec_shape(name, variant):
    backend = loaded_backend(name, variant)
    spec = narrow_spec(variant)
    blobs = backend.forward_blobs(images(2, 3, batch=2), ["data", *spec.blob_names])
    expected = spec.blob_shapes(2, 3)
    assert {k: v.shape for k, v in blobs.items()} == {k: (2, *v) for k, v in expected.items()}


@pytest.mark.parametrize("name", NAMES)
def test_batch_items_are_independent(name):
    backend = loaded_backend(name, "fcn8s")
    batch = images(9, 11, batch=2)
    together = backend.predict(batch)
    alone = backend.predict(batch[1:])
    np.testing.assert_allclose(together[1:], alone, rtol=1e-5, atol=1e-4 * np.abs(alone).max())


@pytest.mark.parametrize("name", NAMES)
def test_unknown_blob_name_is_refused(name):
    with pytest.raises(KeyError, match="no blob"):
        loaded_backend(name, "fcn32s").forward_blobs(images(3, 3), ["pool9"])


@pytest.mark.parametrize("name", NAMES)
def test_images_of_the_wrong_shape_are_refused(name):
    backend = loaded_backend(name, "fcn32s")
    with pytest.raises(UsageError, match=r"\(N, 3, H, W\)"):
        backend.predict(np.zeros((1, 4, 5), np.float32))
    with pytest.raises(UsageError, match="float32"):
        backend.predict(np.zeros((1, 3, 5, 5), np.uint8))


# -- weights -----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", NAMES)
def test_state_round_trips_every_tensor_bit_exactly(name, variant):
    spec = narrow_spec(variant)
    params = random_params(spec, 3)
    backend = backends.create_backend(name, spec, RunOptions(device="cpu"))
    backend.load_params(params)
    state = backend.state_params()
    assert list(state) == [p.name for p in spec.parameters()]  # fixed layers included
    for key, value in params.items():
        assert state[key].dtype == np.float32 and state[key].shape == value.shape, key
        np.testing.assert_array_equal(state[key], value, err_msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_load_params_is_strict_and_lists_every_problem(name):
    spec = narrow_spec("fcn16s")
    params = random_params(spec, 0)
    del params["score_pool4.bias"]
    params["upscore8.weight"] = np.zeros((21, 21, 16, 16), np.float32)
    params["fc7.weight"] = params["fc7.weight"][:, :, :, :0]
    backend = backends.create_backend(name, spec, RunOptions(device="cpu"))
    with pytest.raises(FcnBenchError) as error:
        backend.load_params(params)
    message = str(error.value)
    assert "score_pool4.bias" in message and "upscore8.weight" in message
    assert "fc7.weight" in message


@pytest.mark.parametrize("name", NAMES)
def test_fresh_model_holds_the_fixed_reference_tensors(name):
    """Before any loading: bilinear kernels, at-once scales, zero score layers (Caffe init)."""
    from bench.model.init import fixed_params

    spec = narrow_spec("fcn8s-atonce")
    state = backends.create_backend(name, spec, RunOptions(device="cpu")).state_params()
    for key, value in fixed_params(spec).items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)
    for key in ("score_fr.weight", "score_pool4.bias", "score_pool3.weight"):
        assert not state[key].any(), key


# -- inference semantics -----------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", NAMES)
def test_labels_are_the_argmax_of_the_scores(name, variant):
    backend = loaded_backend(name, variant)
    batch = images(37, 53, batch=2, seed=1)
    labels = backend.predict_labels(batch)
    assert labels.dtype == np.uint8 and labels.shape == (2, 37, 53)
    np.testing.assert_array_equal(labels, backend.predict(batch).argmax(axis=1))


@pytest.mark.parametrize("name", NAMES)
def test_inference_is_deterministic(name):
    """Dropout is off at inference: two passes give identical scores."""
    backend = loaded_backend(name, "fcn32s")
    batch = images(21, 17)
    np.testing.assert_array_equal(backend.predict(batch), backend.predict(batch))


@pytest.mark.parametrize("name", NAMES)
def test_timing_hooks_give_the_predict_scores(name):
    """to_device -> forward_device -> synchronize is what `latency` times: it must compute the
    scores `predict` returns (in the backend's own layout, NCHW or NHWC, and dtype)."""
    backend = loaded_backend(name, "fcn16s")
    batch = images(13, 15)
    on_device = backend.forward_device(backend.to_device(batch))
    backend.synchronize(on_device)
    host = np.asarray(on_device)
    if host.shape == (1, 13, 15, 21):  # a channels-last device layout
        host = host.transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(host.astype(np.float32), backend.predict(batch))


# -- devices, precisions, environment ----------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_environment_describes_the_run(name):
    backend = backends.create_backend(name, narrow_spec("fcn32s"), RunOptions(device="auto"))
    assert backend.device in ("cpu", "cuda")
    env = backend.environment()
    missing = [key for key in ENVIRONMENT_KEYS if key not in env]
    assert not missing, missing
    assert env["device"] == backend.device and env["precision"] == "fp32"
    backend.reset_peak_memory()
    peak = backend.peak_memory_bytes()
    assert peak is None or (isinstance(peak, int) and peak >= 0)


@pytest.mark.parametrize("name", NAMES)
def test_cuda_is_used_or_refused_in_one_line(name):
    try:
        backend = backends.create_backend(name, narrow_spec("fcn32s"), RunOptions(device="cuda"))
    except BackendUnavailable as error:
        assert "--device cpu" in str(error) and "\n" not in str(error)
    else:
        assert backend.device == "cuda"


@pytest.mark.parametrize("name", NAMES)
def test_unknown_device_and_precision_are_usage_errors(name):
    spec = narrow_spec("fcn32s")
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        backends.create_backend(name, spec, RunOptions(device="tpu"))
    with pytest.raises(UsageError, match="unknown precision 'fp8'"):
        backends.create_backend(name, spec, RunOptions(device="cpu", precision="fp8"))


# -- the same network as the reference, on every model of the zoo ------------------------------


def model_inputs(spec: FcnSpec, height: int, width: int, seed: int = 0):
    """Mean-subtracted-like random input(s): a plain array for one input, else a dict."""
    rng = np.random.default_rng(seed)
    arrays = {item.name: rng.uniform(-120, 120, (1, item.channels, height, width))
              .astype(np.float32) for item in spec.inputs}
    return arrays if len(arrays) > 1 else next(iter(arrays.values()))


def compared_blobs(spec: FcnSpec) -> list[str]:
    names = parity_layers(spec)
    return names + [name for name in spec.outputs if name not in names]


@functools.cache
def narrow_case(name: str):
    """(spec, params, inputs, reference blobs) of a narrow model, computed once per session."""
    from backends.reference import reference_forward

    spec = build_spec(name, width_divisor=WIDTH_DIVISOR)
    params = random_params(spec, seed=1)
    images = model_inputs(spec, *PARITY_SIZE)
    return spec, params, images, reference_forward(spec, params, images, compared_blobs(spec))


def assert_parity(spec, reference, blobs, backend):
    names = compared_blobs(spec)
    for output in spec.outputs:  # labels agree on every head
        report = compare(reference, blobs, names, output=output,
                         tolerance=tolerance_for("fp32"), left="reference", right=backend)
        assert report.passed, report.table()


@pytest.mark.parametrize("backend", COMPARED)
@pytest.mark.parametrize("name", MODELS)
def test_backend_equals_reference_on_every_model(name, backend):
    spec, params, images, reference = narrow_case(name)
    model = backends.create_backend(backend, spec, RunOptions(device="cpu"))
    model.load_params(params)
    assert_parity(spec, reference, model.forward_blobs(images, compared_blobs(spec)), backend)
    scores = model.predict(images)
    if len(spec.outputs) == 1:  # single head: a plain array
        np.testing.assert_allclose(scores, reference[spec.output], rtol=0, atol=1e-4 * np.abs(
            reference[spec.output]).max())
    else:  # several heads: a dict of named score blobs, and of label maps
        assert set(scores) == set(spec.outputs)
        labels = model.predict_labels(images)
        for output in spec.outputs:
            assert scores[output].shape == (1, spec.output_classes()[output], *PARITY_SIZE)
            assert labels[output].shape == (1, *PARITY_SIZE) and labels[output].dtype == np.uint8

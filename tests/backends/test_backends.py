"""What the framework backends (torch, tensorflow) do beyond the contract: dropout in training,
devices, precisions, compilation, cheaper upsampling forms. The contract itself, for every
backend, is tests/backends/test_conformance.py (whose narrow-net helpers these tests share).
"""

from __future__ import annotations

import numpy as np
import pytest

import backends
from bench.core.contracts import RunOptions
from bench.core.errors import BackendUnavailable, UsageError
from bench.model.init import random_params
from bench.model.spec import VARIANTS, build_spec
from tests.backends.test_conformance import images, loaded_backend, narrow_spec

# The framework backends (contract tests for every backend: test_conformance.py).
BACKENDS = [name for name in backends.available_backends() if name in backends.BACKEND_NAMES]

pytestmark = pytest.mark.skipif(not BACKENDS, reason="neither torch nor tensorflow is installed")


def has_cuda(name: str) -> bool:
    if name == "torch":
        import torch

        return torch.cuda.is_available()
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


# -- dropout in training mode (the models the trainer builds on) -------------------------------


def test_torch_dropout_is_elementwise_in_train_mode_only():
    torch = pytest.importorskip("torch")
    from backends.torch import FcnModule

    spec = narrow_spec("fcn32s")
    model = FcnModule(spec)
    model.load_canonical(random_params(spec, 0))
    x = torch.from_numpy(images(64, 64, batch=2))  # fc6 is 2 x 3 x 3 cells per channel
    with torch.no_grad():
        model.eval()
        eval_blobs = model.blobs(x, ["fc6", "drop6", "score"])
        assert torch.equal(eval_blobs["drop6"], eval_blobs["fc6"])
        assert torch.equal(model(x), eval_blobs["score"])
        model.train()
        torch.manual_seed(0)
        train_blobs = model.blobs(x, ["fc6", "drop6", "score"])
    fc6, dropped = train_blobs["fc6"], train_blobs["drop6"]
    kept = dropped != 0
    # Inverted dropout: survivors scaled by 1 / (1 - 0.5); about half of the cells dropped,
    # independently per element (Dropout2d would zero whole channels).
    torch.testing.assert_close(dropped[kept], 2 * fc6[kept])
    positive = fc6 > 0
    fraction_dropped = 1 - kept[positive].float().mean().item()
    assert 0.35 < fraction_dropped < 0.65
    per_channel = kept.float().mean(dim=(0, 2, 3))
    assert ((per_channel > 0) & (per_channel < 1)).any(), "whole channels dropped: Dropout2d?"
    assert not torch.equal(train_blobs["fc6"], train_blobs["drop6"])


def test_torch_parameters_are_the_canonical_names_with_spec_trainability():
    pytest.importorskip("torch")
    from backends.torch import FcnModule

    for variant in VARIANTS:
        spec = narrow_spec(variant)
        named = dict(FcnModule(spec).named_parameters())
        assert list(named) == [p.name for p in spec.parameters()]
        assert {k: v.requires_grad for k, v in named.items()} == {
            p.name: p.trainable for p in spec.parameters()}


def test_tensorflow_dropout_is_elementwise_in_training_only():
    tf = pytest.importorskip("tensorflow")
    from backends.tensorflow import FcnModule

    spec = narrow_spec("fcn32s")
    model = FcnModule(spec, seed=0)
    model.load_canonical(random_params(spec, 0))
    x = tf.constant(images(64, 64, batch=2).transpose(0, 2, 3, 1))  # fc6: 2 x 3 x 3 per channel
    eval_blobs = model.blobs(x, ["fc6", "drop6"], training=False)
    np.testing.assert_array_equal(eval_blobs["drop6"].numpy(), eval_blobs["fc6"].numpy())
    train_blobs = model.blobs(x, ["fc6", "drop6"], training=True)
    fc6, dropped = train_blobs["fc6"].numpy(), train_blobs["drop6"].numpy()
    kept = dropped != 0
    np.testing.assert_allclose(dropped[kept], 2 * fc6[kept], rtol=1e-6)
    fraction_dropped = 1 - kept[fc6 > 0].mean()
    assert 0.35 < fraction_dropped < 0.65
    per_channel = kept.mean(axis=(0, 1, 2))
    assert ((per_channel > 0) & (per_channel < 1)).any(), "whole channels dropped"


def test_tensorflow_variables_are_the_canonical_names_with_spec_trainability():
    pytest.importorskip("tensorflow")
    from backends.tensorflow import FcnModule

    spec = narrow_spec("fcn8s-atonce")
    model = FcnModule(spec)
    assert list(model.params) == [p.name for p in spec.parameters()]
    assert {v.name.split(":")[0] for v in model.trainable_variables} == {
        p.name for p in spec.parameters() if p.trainable}
    assert {k: v.trainable for k, v in model.params.items()} == {
        p.name: p.trainable for p in spec.parameters()}


# -- devices, precisions, names ----------------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
def test_absent_cuda_is_a_clear_error(name):
    if has_cuda(name):
        pytest.skip("a GPU is present")
    with pytest.raises(BackendUnavailable, match=r"'cuda' requested .* use --device cpu"):
        backends.create_backend(name, narrow_spec("fcn32s"), RunOptions(device="cuda"))


@pytest.mark.parametrize("name", BACKENDS)
def test_auto_device_resolves_and_environment_is_described(name):
    backend = backends.create_backend(name, narrow_spec("fcn32s"), RunOptions(device="auto"))
    assert backend.device == ("cuda" if has_cuda(name) else "cpu")
    env = backend.environment()
    for key in ("framework", "framework_version", "device", "device_name", "precision", "tf32",
                "intra_op_threads", "compile", "channels_last", "cuda_version", "driver"):
        assert key in env, key
    assert env["tf32"] is False and env["precision"] == "fp32"
    if backend.device == "cpu":
        backend.reset_peak_memory()
        assert backend.peak_memory_bytes() is None


@pytest.mark.parametrize("name", BACKENDS)
def test_tf32_on_a_cpu_is_a_usage_error(name):
    with pytest.raises(UsageError, match="'tf32' needs a CUDA GPU"):
        backends.create_backend(name, narrow_spec("fcn32s"),
                                RunOptions(device="cpu", precision="tf32"))


@pytest.mark.parametrize("precision", ["bf16", "fp16", "amp-bf16", "amp-fp16"])
@pytest.mark.parametrize("name", BACKENDS)
def test_reduced_precision_returns_float32_scores_close_to_fp32(name, precision):
    from bench.evaluation.parity import TOLERANCES

    spec = narrow_spec("fcn8s")
    backend = backends.create_backend(name, spec, RunOptions(device="cpu", precision=precision))
    backend.load_params(random_params(spec, 0))
    batch = images(19, 23)
    scores = backend.predict(batch)
    reference = loaded_backend(name, "fcn8s").predict(batch)
    assert scores.dtype == np.float32
    rel = np.abs(scores - reference).max() / np.abs(reference).max()
    assert 0 < rel <= TOLERANCES[precision].max_rel  # really reduced, and within budget


def test_unknown_backend_lists_the_choices():
    with pytest.raises(UsageError, match="unknown backend 'caffe'; choose from torch, tensorflow"):
        backends.create_backend("caffe", narrow_spec("fcn32s"))


def test_tf_alias_creates_the_tensorflow_backend():
    if "tensorflow" not in BACKENDS:
        pytest.skip("tensorflow is not installed")
    backend = backends.create_backend("tf", narrow_spec("fcn32s"), RunOptions(device="cpu"))
    assert backend.name == "tensorflow"
    assert backend.environment()["framework"] == "tensorflow"


def test_torch_threads_option_sets_intra_op_threads():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        backend = backends.create_backend("torch", narrow_spec("fcn32s"),
                                          RunOptions(device="cpu", threads=1))
        assert backend.environment()["intra_op_threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_tensorflow_threads_after_start_up_are_reported_not_hidden():
    pytest.importorskip("tensorflow")
    loaded_backend("tensorflow", "fcn32s")  # the runtime is initialised by now
    backend = backends.create_backend("tensorflow", narrow_spec("fcn32s"),
                                      RunOptions(device="cpu", threads=1))
    env = backend.environment()
    assert env["intra_op_threads"] == 1 or "already initialised" in env.get("threads_note", "")


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKENDS)
def test_compiled_forward_matches_eager(name):
    spec = narrow_spec("fcn8s")
    try:
        backend = backends.create_backend(name, spec, RunOptions(device="cpu", compile=True))
        backend.load_params(random_params(spec, 0))
        batch = images(9, 11)
        scores = backend.predict(batch)
    except BackendUnavailable as error:
        pytest.skip(str(error))
    assert backend.environment()["compile"] in ("default", "xla")
    reference = loaded_backend(name, "fcn8s").predict(batch)
    np.testing.assert_allclose(scores, reference, rtol=0, atol=1e-4 * np.abs(reference).max())


def test_torch_channels_last_computes_the_same_scores():
    pytest.importorskip("torch")
    spec = narrow_spec("fcn16s")
    backend = backends.create_backend("torch", spec, RunOptions(device="cpu", channels_last=True))
    backend.load_params(random_params(spec, 0))
    batch = images(15, 13)
    reference = loaded_backend("torch", "fcn16s").predict(batch)
    assert backend.environment()["channels_last"] is True
    np.testing.assert_allclose(backend.predict(batch), reference, rtol=0,
                               atol=1e-5 * np.abs(reference).max())


def test_fresh_modules_hold_the_same_placeholder_values_in_both_backends():
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    from backends.tensorflow.model import FcnModule as TfModule
    from backends.torch.model import FcnModule as TorchModule
    from bench.model.init import placeholder_params

    spec = build_spec("fcn8s-atonce", width_divisor=32)
    expected = placeholder_params(spec)
    for module in (TorchModule(spec), TfModule(spec)):
        got = module.canonical_params()
        assert all(np.array_equal(got[name], expected[name]) for name in expected)


# -- precision as deployed: cast once vs autocast ------------------------------------------------


@pytest.mark.parametrize(("precision", "weights", "compute"), [
    ("fp32", "float32", "float32"), ("bf16", "bfloat16", "bfloat16"),
    ("fp16", "float16", "float16"), ("amp-bf16", "float32", "bfloat16"),
    ("amp-fp16", "float32", "float16")])
@pytest.mark.parametrize("name", BACKENDS)
def test_bf16_fp16_cast_the_model_once_and_amp_keeps_fp32_weights(name, precision, weights,
                                                                   compute):
    spec = narrow_spec("fcn32s")
    backend = backends.create_backend(name, spec, RunOptions(device="cpu", precision=precision))
    params = random_params(spec, 0)
    backend.load_params(params)
    env = backend.environment()
    assert (env["weights_dtype"], env["compute_dtype"]) == (weights, compute)
    assert env["autocast"] is precision.startswith("amp-")
    if name == "torch":
        stored = {str(p.dtype).removeprefix("torch.") for p in backend.model.parameters()}
        batch = backend.to_device(images(5, 5))
        assert str(batch.dtype).removeprefix("torch.") == weights  # the input is cast too
    else:
        stored = {v.dtype.name for v in backend.model.params.values()}
    assert stored == {weights}
    # Canonical float32 comes back out, rounded to the stored dtype at most.
    state = backend.state_params()
    assert state["fc6.weight"].dtype == np.float32
    rel = np.abs(state["fc6.weight"] - params["fc6.weight"]).max() / np.abs(
        params["fc6.weight"]).max()
    assert rel <= (0 if weights == "float32" else 1e-2)


@pytest.mark.parametrize("name", BACKENDS)
def test_compile_modes_of_the_other_framework_are_refused(name):
    spec = narrow_spec("fcn32s")
    foreign = "xla" if name == "torch" else "max-autotune"
    with pytest.raises(UsageError, match=f"compile mode '{foreign}'"):
        backends.create_backend(name, spec, RunOptions(device="cpu", compile=foreign))
    with pytest.raises(UsageError, match="unknown compile mode 'fast'"):
        backends.create_backend(name, spec, RunOptions(device="cpu", compile="fast"))
    # The old boolean flag still means the framework's default compilation.
    backend = backends.create_backend(name, spec, RunOptions(device="cpu", compile=True))
    assert backend.environment()["compile"] == ("default" if name == "torch" else "xla")


@pytest.mark.parametrize("name", BACKENDS)
def test_measured_ceilings_describe_the_device(name):
    backend = loaded_backend(name, "fcn32s")
    ceilings = backend.measure_peak()
    assert ceilings["device"] == backend.device and ceilings["dtype"] == "float32"
    assert ceilings["matmul_tflops"] > 0 and ceilings["copy_gb_per_s"] > 0
    assert "best of" in ceilings["matmul_method"]


# -- cheaper exact upsampling ------------------------------------------------------------------


def _dense_and_fast_blobs(name: str, variant: str, batch: np.ndarray, params=None):
    spec = narrow_spec(variant)
    backend = backends.create_backend(name, spec, RunOptions(device="cpu"))
    backend.load_params(params or random_params(spec, 0))
    chosen = dict(backend.upsampling)
    fast = backend.forward_blobs(batch, spec.blob_names)
    backend.plan_upsampling({layer: "dense" for layer in chosen})
    dense = backend.forward_blobs(batch, spec.blob_names)
    return chosen, fast, dense


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", BACKENDS)
def test_cheaper_upsampling_equals_the_full_deconvolution(name, variant):
    """fp32: every blob within float rounding of the dense deconvolution, labels 100 %."""
    batch = images(37, 53, batch=2)
    chosen, fast, dense = _dense_and_fast_blobs(name, variant, batch)
    assert set(chosen) == {layer.name for layer in narrow_spec(variant).layers
                           if type(layer).__name__ == "Upsample"}
    assert {"grouped", "separable"} & set(chosen.values())  # a cheaper form is in use
    for blob in dense:
        scale = max(np.abs(dense[blob]).max(), 1e-30)
        assert np.abs(fast[blob] - dense[blob]).max() / scale <= 1e-6, blob
    output = narrow_spec(variant).output
    assert np.array_equal(fast[output].argmax(1), dense[output].argmax(1))


@pytest.mark.parametrize("form", ["grouped", "separable"])
@pytest.mark.parametrize("name", BACKENDS)
def test_each_cheaper_form_matches_the_numpy_reference(name, form):
    from backends.reference import reference_forward

    spec = narrow_spec("fcn8s")
    params = random_params(spec, 0)
    backend = backends.create_backend(name, spec, RunOptions(device="cpu"))
    backend.load_params(params)
    forms = backend.plan_upsampling({"upscore2": form, "upscore_pool4": form, "upscore8": form})
    assert set(forms.values()) == {form} and backend.environment()["upsampling"] == forms
    batch = images(21, 17)
    ours = backend.predict(batch)
    reference = reference_forward(spec, params, batch, [spec.output])[spec.output]
    assert np.abs(ours - reference).max() / np.abs(reference).max() <= 1e-5


@pytest.mark.parametrize("name", BACKENDS)
def test_upsampling_weights_that_are_not_diagonal_bilinear_keep_the_full_deconvolution(name):
    spec = narrow_spec("fcn8s")
    params = random_params(spec, 0)
    params["upscore8.weight"] = params["upscore8.weight"].copy()
    params["upscore8.weight"][0, 1, 3, 3] = 0.5  # a class mixes into another
    params["upscore2.weight"] = params["upscore2.weight"] * np.float32(1.001)  # not bilinear
    chosen, fast, dense = _dense_and_fast_blobs(name, "fcn8s", images(19, 23), params)
    assert chosen["upscore8"] == "dense" and chosen["upscore2"] == "dense"
    assert chosen["upscore_pool4"] == "grouped"  # still the reference kernel
    np.testing.assert_allclose(fast["score"], dense["score"], rtol=0,
                               atol=1e-6 * np.abs(dense["score"]).max())


def test_upsampling_form_is_data_per_framework_device_dtype_and_layer():
    from bench.model.init import bilinear_filter
    from bench.perf.upsampling import bilinear_ramp, upsample_form

    assert upsample_form("torch", "cpu", False, 16, 8) == "separable"
    assert upsample_form("torch", "cpu", True, 16, 8) == "dense"  # CPU half: dense is fastest
    assert upsample_form("torch", "cuda", True, 16, 8) == "separable"
    assert upsample_form("torch", "cuda", False, 16, 8) == "dense"  # H100 fp32: 225 us vs 619
    assert upsample_form("torch", "cuda", True, 4, 2) == "grouped"
    assert upsample_form("tensorflow", "cuda", True, 16, 8) == "dense"  # not measured
    for kernel in (4, 16, 32, 64):
        ramp = bilinear_ramp(kernel)
        assert np.array_equal(np.outer(ramp, ramp), bilinear_filter(kernel))


# -- the half-precision gate on the golden set ------------------------------------------------


@pytest.fixture(scope="module")
def golden_images(tmp_path_factory):
    from bench.ci.golden import GoldenConfig, make_golden_images

    return make_golden_images(tmp_path_factory.mktemp("golden"), GoldenConfig())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("name", BACKENDS)
def test_half_precision_labels_agree_with_fp32_on_the_golden_set(name, precision,
                                                                golden_images):
    from bench.ci.golden_half import half_precision_rows

    rows = half_precision_rows(
        lambda backend, spec, p: backends.create_backend(backend, spec,
                                                         RunOptions(device="cpu", precision=p)),
        name, precision, golden_images, variants=("fcn8s-atonce",))
    for row in rows:
        assert row["status"] == "ok" and row["passed"], row
        assert row["label_agreement_with_fp32"] >= 0.995
        assert row["decided_pixels"] > 0.8 * row["label_pixels"]


def test_half_precision_gate_fails_a_broken_half_path():
    from bench.evaluation.parity import half_precision_gate

    rng = np.random.default_rng(0)
    scores = [rng.standard_normal((21, 20, 30)).astype(np.float32)]
    right = [scores[0].argmax(axis=0)]
    assert half_precision_gate(scores, right, "bf16")["passed"]
    wrong = [np.roll(right[0], 1, axis=1)]  # a one-pixel shift: a geometry slip in half only
    verdict = half_precision_gate(scores, wrong, "bf16")
    assert not verdict["passed"] and verdict["label_agreement_with_fp32"] < 0.5


@pytest.mark.parametrize("precision", ["fp16", "bf16", "amp-fp16"])
@pytest.mark.parametrize("name", BACKENDS)
def test_half_precision_lrn_stays_finite(name, precision):
    """AlexNet's LRN squares activations of hundreds: in float16 that overflows (65504), so both
    backends normalise in float32 and return the model's dtype; scores stay finite and close."""
    spec = narrow_spec("voc-fcn-alexnet")
    params = random_params(spec, 0)
    images = (np.random.default_rng(0).standard_normal((1, 3, 45, 61)) * 120).astype(np.float32)
    full = backends.create_backend(name, spec, RunOptions(device="cpu"))
    full.load_params(params)
    half = backends.create_backend(name, spec, RunOptions(device="cpu", precision=precision))
    half.load_params(params)
    reference, scores = full.predict(images), half.predict(images)
    assert np.isfinite(scores).all()
    assert np.abs(scores - reference).max() <= 0.05 * np.abs(reference).max()

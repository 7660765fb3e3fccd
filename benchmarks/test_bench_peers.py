"""The project's torch FCN-8s against a plain hand-written port, same weights, interleaved.

    .venv/bin/python -m pytest benchmarks/test_bench_peers.py --benchmark-only
    ... --fcn-size 500x500 --fcn-device cuda          # on a GPU: every precision
The peer is what a port such as pytorch-fcn writes: a straight-line forward, in-place ReLU,
ceil-mode pooling, the full C x C deconvolutions, crops as slices at typed offsets (5, 9, 31).
It is written here, independently of bench/model/spec.py, so it is also a check: both must give the
same scores before either is timed. Each round calls both once, in a seeded shuffled order
(drift hits both alike); the verdict is the ratio of medians, ours / peer, which must be <= 1
within noise (the half-width of its bootstrap 95% interval, at least 2 %). See docs/latency.md.
"""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from backends.torch.backend import TorchBackend  # noqa: E402
from bench.core.contracts import RunOptions  # noqa: E402 - after the importorskip
from bench.model.init import random_params  # noqa: E402
from bench.model.spec import build_spec  # noqa: E402
from bench.perf.latency import synthetic_batch  # noqa: E402

ROUNDS = {"cpu": 7, "cuda": 200}
MIN_NOISE = 0.02


class PlainFcn8s(nn.Module):
    """FCN-8s as a typical port writes it (21 classes, VGG16 trunk)."""

    def __init__(self, classes: int = 21):
        super().__init__()
        relu = {"inplace": True}
        channels = [(3, 64), (64, 64), "M", (64, 128), (128, 128), "M", (128, 256), (256, 256),
                    (256, 256), "M", (256, 512), (512, 512), (512, 512), "M", (512, 512),
                    (512, 512), (512, 512), "M"]
        self.features = nn.ModuleList()
        first = True
        for item in channels:
            if item == "M":
                self.features.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                self.features.append(nn.Conv2d(*item, 3, padding=100 if first else 1))
                self.features.append(nn.ReLU(**relu))
                first = False
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.relu = nn.ReLU(**relu)
        self.score_fr = nn.Conv2d(4096, classes, 1)
        self.score_pool3 = nn.Conv2d(256, classes, 1)
        self.score_pool4 = nn.Conv2d(512, classes, 1)
        self.upscore2 = nn.ConvTranspose2d(classes, classes, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(classes, classes, 16, stride=8, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(classes, classes, 4, stride=2, bias=False)

    def forward(self, x):
        h = x
        pools = []
        for layer in self.features:
            h = layer(h)
            if isinstance(layer, nn.MaxPool2d):
                pools.append(h)
        pool3, pool4 = pools[2], pools[3]
        h = self.relu(self.fc6(h))
        h = self.relu(self.fc7(h))
        upscore2 = self.upscore2(self.score_fr(h))
        h = self.score_pool4(pool4)[:, :, 5:5 + upscore2.size(2), 5:5 + upscore2.size(3)]
        upscore_pool4 = self.upscore_pool4(upscore2 + h)
        h = self.score_pool3(pool3)
        h = h[:, :, 9:9 + upscore_pool4.size(2), 9:9 + upscore_pool4.size(3)]
        h = self.upscore8(upscore_pool4 + h)
        return h[:, :, 31:31 + x.size(2), 31:31 + x.size(3)].contiguous()

    def load_canonical(self, params) -> None:
        """The neutral archive's Caffe-named tensors (torch layouts are Caffe's)."""
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        names = [f"conv{stage}_{i}" for stage, count in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
                 for i in range(1, count + 1)]
        targets = dict(zip(names, convs, strict=True))
        targets.update({n: getattr(self, n) for n in ("fc6", "fc7", "score_fr", "score_pool3",
                                                      "score_pool4", "upscore2", "upscore8",
                                                      "upscore_pool4")})
        with torch.no_grad():
            for name, module in targets.items():
                module.weight.copy_(torch.from_numpy(params[f"{name}.weight"]))
                if module.bias is not None:
                    module.bias.copy_(torch.from_numpy(params[f"{name}.bias"]))


def _precisions(device: str) -> list[str]:
    return (["fp32", "bf16"] if device == "cpu" else
            ["fp32", "tf32", "bf16", "fp16", "amp-bf16", "amp-fp16"])


def ratio_with_noise(ours: list[float], peer: list[float], seed: int = 0
                     ) -> tuple[float, float]:
    """(median(ours) / median(peer), half-width of its percentile-bootstrap 95% interval)."""
    a, b = np.asarray(ours), np.asarray(peer)
    rng = np.random.default_rng(seed)
    ratios = [np.median(rng.choice(a, a.size)) / np.median(rng.choice(b, b.size))
              for _ in range(1000)]
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(np.median(a) / np.median(b)), float(high - low) / 2


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16", "fp16", "amp-bf16", "amp-fp16"])
def test_project_model_is_no_slower_than_a_plain_port(benchmark, bench_settings, precision):
    device = "cuda" if (bench_settings.device == "cuda" or (
        bench_settings.device == "auto" and torch.cuda.is_available())) else "cpu"
    if precision not in _precisions(device):
        pytest.skip(f"{precision} is not timed on {device}")
    if bench_settings.threads:
        torch.set_num_threads(bench_settings.threads)
    spec = build_spec("fcn8s")
    params = random_params(spec, 0)
    ours = TorchBackend(spec, RunOptions(device=device, precision=precision))
    ours.load_params(params)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    autocast = {"amp-bf16": torch.bfloat16, "amp-fp16": torch.float16}.get(precision)
    peer = PlainFcn8s().eval()
    peer.load_canonical(params)
    peer = peer.to(device, dtype)
    images = synthetic_batch(bench_settings.height, bench_settings.width, 1, seed=0)
    batch = ours.to_device(images)

    @torch.inference_mode()
    def call_peer():
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
        if autocast is None:
            scores = peer(batch).float()
        else:
            with torch.autocast(device, dtype=autocast):
                scores = peer(batch).float()
        ours.synchronize(scores)
        return scores

    def call_ours():
        scores = ours.forward_device(batch)
        ours.synchronize(scores)
        return scores

    # Same network, same weights: the same scores (fp32 exactly up to rounding order).
    a, b = call_ours().cpu().numpy(), call_peer().cpu().numpy()
    tolerance = 1e-5 if precision == "fp32" else 5e-2
    assert np.abs(a - b).max() <= tolerance * np.abs(b).max()

    times: dict[str, list[float]] = {"ours": [], "peer": []}
    order = random.Random(0)
    calls = {"ours": call_ours, "peer": call_peer}

    def one_round() -> None:
        names = list(calls)
        order.shuffle(names)
        for name in names:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)

    for _ in range(3 if device == "cpu" else 20):  # warm-up (cuDNN, allocator)
        one_round()
    for series in times.values():
        series.clear()
    benchmark.group = f"peers fcn8s {bench_settings.size} {device} {precision}"
    benchmark.pedantic(one_round, rounds=ROUNDS[device], iterations=1)
    ratio, noise = ratio_with_noise(times["ours"], times["peer"])
    benchmark.extra_info.update({
        "device": device, "precision": precision, "size": bench_settings.size,
        "ours_median_ms": 1e3 * float(np.median(times["ours"])),
        "peer_median_ms": 1e3 * float(np.median(times["peer"])),
        "ratio_ours_over_peer": ratio, "ratio_ci95_half_width": noise,
        "upsampling": dict(ours.upsampling)})
    print(f"\nfcn8s {device} {precision} {bench_settings.size}: ours "
          f"{1e3 * np.median(times['ours']):.2f} ms, peer {1e3 * np.median(times['peer']):.2f}"
          f" ms, ratio {ratio:.3f} +- {noise:.3f} (upsampling {ours.upsampling})")
    assert ratio <= 1.0 + max(noise, MIN_NOISE), (
        f"the project's model is slower than a plain port: {ratio:.3f} (noise {noise:.3f})")

"""Tests of dlmi.interpret: reading out layers and probing them linearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlmi.interpret import layer_outputs, linear_probe
from dlmi.models import SmallCNN
from dlmi.train import to_float


@pytest.fixture
def cnn_and_images():
    """An untrained SmallCNN (16, 32, 64) and five 64x64 greyscale uint8 images."""
    torch.manual_seed(0)
    model = SmallCNN(1, 6)
    images = torch.randint(0, 256, (5, 1, 64, 64), dtype=torch.uint8)
    return model, images


@pytest.mark.parametrize("batch_size", [2, 256])
def test_layer_outputs_sizes(cnn_and_images, batch_size):
    """Requested nodes plus 'input', flattened per image: C x H x W of each block, 64 after pooling."""
    model, images = cnn_and_images
    nodes = ["features.0", "features.1", "features.2", "pool"]
    out = layer_outputs(model, images, nodes, batch_size=batch_size)
    assert list(out) == ["input", *nodes]
    expected = {"input": 64 * 64, "features.0": 16 * 32 * 32, "features.1": 32 * 16 * 16, "features.2": 64 * 8 * 8, "pool": 64}
    assert {k: v.shape for k, v in out.items()} == {k: (5, d) for k, d in expected.items()}
    assert all(v.dtype == np.float32 for v in out.values())


def test_layer_outputs_values(cnn_and_images):
    """'input' is the scaled pixels and 'pool' the network's own pooled features (eval mode)."""
    model, images = cnn_and_images
    out = layer_outputs(model, images, ["pool"], batch_size=2)
    np.testing.assert_allclose(out["input"], to_float(images).flatten(1).numpy())
    with torch.no_grad():
        pooled = model.eval().pool(model.features(to_float(images))).numpy()
    np.testing.assert_allclose(out["pool"], pooled, rtol=1e-5, atol=1e-6)


def test_layer_outputs_subset_of_nodes(cnn_and_images):
    """Only the requested nodes come back (plus 'input')."""
    model, images = cnn_and_images
    assert set(layer_outputs(model, images, ["features.1"])) == {"input", "features.1"}


def separable(n: int, d: int, seed: int):
    """Two Gaussian blobs in d dimensions, far apart along every axis."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, d)) + 3.0 * (2 * y[:, None] - 1)
    return x, y


def test_linear_probe_separable():
    """Linearly separable features: the probe is (nearly) perfect."""
    xtr, ytr = separable(200, 20, 0)
    xte, yte = separable(200, 20, 1)
    assert linear_probe(xtr, ytr, xte, yte) >= 0.99


def test_linear_probe_random_labels():
    """Labels unrelated to the features: the probe scores about chance (1/2)."""
    rng = np.random.default_rng(0)
    xtr, xte = rng.normal(size=(300, 30)), rng.normal(size=(400, 30))
    ytr, yte = rng.integers(0, 2, 300), rng.integers(0, 2, 400)
    assert abs(linear_probe(xtr, ytr, xte, yte) - 0.5) < 0.1


def test_linear_probe_few_samples_and_torch_labels():
    """Fewer rows than n_components and torch labels are handled."""
    xtr, ytr = separable(20, 100, 2)
    xte, yte = separable(40, 100, 3)
    assert linear_probe(xtr, torch.from_numpy(ytr), xte, torch.from_numpy(yte), n_components=50) >= 0.95


def test_linear_probe_is_deterministic():
    """Same inputs and seed: same score."""
    xtr, ytr = separable(100, 60, 4)
    xte, yte = separable(100, 60, 5)
    ytr[:30] = 1 - ytr[:30]  # some label noise so the score is not trivially 1
    assert linear_probe(xtr, ytr, xte, yte, seed=1) == linear_probe(xtr, ytr, xte, yte, seed=1)


# --------------------------------------------------------------------------- attribution maps (chapter 8)

from dlmi import interpret  # noqa: E402
from dlmi.models import SmallResNet  # noqa: E402


@pytest.fixture
def resnet_and_images():
    """A small untrained SmallResNet (8, 16, 32) with 2 classes and four 16x16 greyscale uint8 images."""
    torch.manual_seed(0)
    model = SmallResNet(1, 2, widths=(8, 16, 32)).eval()
    images = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)
    return model, images


@pytest.mark.parametrize("method", interpret.ATTRIBUTION_METHODS)
@pytest.mark.parametrize("channels", [1, 3])
def test_attributions_have_the_input_shape(method, channels):
    """Every method returns float32 (N, C, H, W) on the CPU, finite and not all zero."""
    torch.manual_seed(0)
    model = SmallResNet(channels, 3, widths=(8, 16, 32)).eval()
    images = torch.randint(0, 256, (3, channels, 16, 16), dtype=torch.uint8)
    attr = interpret.attribute(model, images, method, n_steps=8, batch_size=2)
    assert attr.shape == images.shape and attr.dtype == torch.float32 and attr.device.type == "cpu"
    assert torch.isfinite(attr).all() and attr.abs().sum() > 0


def test_saliency_is_the_input_gradient(resnet_and_images):
    """Saliency equals autograd's gradient of the target logit (inputs scaled to [0, 1])."""
    model, images = resnet_and_images
    x = to_float(images).requires_grad_(True)
    model(x)[:, 1].sum().backward()
    np.testing.assert_allclose(interpret.attribute(model, images, "saliency", target=1).numpy(), x.grad.numpy(), rtol=1e-4, atol=1e-7)


def test_integrated_gradients_completeness(resnet_and_images):
    """IG's attributions sum to f(x) - f(baseline) for the target logit (up to the path discretisation)."""
    model, images = resnet_and_images
    attr = interpret.attribute(model, images, "integrated_gradients", target=0, n_steps=200)
    with torch.no_grad():
        gap = model(to_float(images))[:, 0] - model(torch.zeros_like(to_float(images)))[:, 0]
    np.testing.assert_allclose(attr.sum(dim=(1, 2, 3)).numpy(), gap.numpy(), rtol=0.05, atol=1e-3)


def test_grad_cam_is_non_negative_and_equal_across_channels():
    """Grad-CAM keeps positive evidence only and is one map repeated over the input channels."""
    torch.manual_seed(1)
    model = SmallResNet(3, 2, widths=(8, 16, 32)).eval()
    attr = interpret.attribute(model, torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8), "grad_cam")
    assert (attr >= 0).all()
    assert torch.equal(attr[:, 0], attr[:, 1]) and torch.equal(attr[:, 0], attr[:, 2])


def test_occlusion_sees_only_the_pixels_the_model_uses():
    """A 'model' that reads one pixel: occlusion is zero wherever no window covers that pixel."""

    class OnePixel(torch.nn.Module):
        def forward(self, x):
            v = x[:, 0, 2, 3]
            return torch.stack([-v, v], 1)

    images = torch.full((2, 1, 12, 12), 200, dtype=torch.uint8)
    attr = interpret.attribute(OnePixel(), images, "occlusion", target=1, window=2, stride=2)[:, 0]
    assert (attr[:, 2, 2:4] > 0).all()
    mask = torch.ones(12, 12, dtype=torch.bool)
    mask[2, 2:4] = False  # the one window covering (2, 3) at stride 2 also covers (2, 2) ... and rows 2-3
    mask[3, 2:4] = False
    assert (attr[:, mask] == 0).all()


def test_target_defaults_to_the_prediction(resnet_and_images):
    """target=None explains the predicted class, the same as passing the predictions."""
    model, images = resnet_and_images
    with torch.no_grad():
        pred = model(to_float(images)).argmax(1)
    assert torch.equal(interpret.attribute(model, images, "saliency"), interpret.attribute(model, images, "saliency", target=pred))


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.zeros(1, 16, 16), r"shape \(N, C, H, W\)"),
        (torch.zeros(0, 1, 16, 16), r"N >= 1"),
        (torch.full((1, 1, 16, 16), float("nan")), "NaN"),
        (torch.full((1, 1, 16, 16), float("inf")), "NaN or infinite"),
        (np.zeros((1, 1, 16, 16)), "torch.Tensor"),
    ],
)
def test_attribute_rejects_bad_images(resnet_and_images, images, match):
    model, _ = resnet_and_images
    with pytest.raises(ValueError, match=match):
        interpret.attribute(model, images, "saliency")


def test_attribute_rejects_unknown_method_and_bad_target(resnet_and_images):
    model, images = resnet_and_images
    with pytest.raises(ValueError, match="unknown attribution method 'lime'"):
        interpret.attribute(model, images, "lime")
    with pytest.raises(ValueError, match="one per image"):
        interpret.attribute(model, images, "saliency", target=[0, 1])


def test_cascade_blocks_order():
    """From the head back to the stem; parameter-free pooling is skipped."""
    assert interpret.cascade_blocks(SmallResNet(1, 2, widths=(8, 16, 32))) == ["head", "features.2", "features.1", "features.0", "stem"]
    assert interpret.cascade_blocks(SmallCNN(1, 2)) == ["head", "features.2", "features.1", "features.0"]


def test_randomise_blocks_changes_only_those_blocks(resnet_and_images):
    """Named blocks get new values, others keep theirs, the original is untouched; the seed fixes the draw."""
    model, _ = resnet_and_images
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rand = interpret.randomise_blocks(model, ["head", "features.2"], seed=3)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    new = rand.state_dict()
    assert not torch.equal(new["head.1.weight"], before["head.1.weight"])
    assert not torch.equal(new["features.2.0.conv1.weight"], before["features.2.0.conv1.weight"])
    assert torch.equal(new["features.1.0.conv1.weight"], before["features.1.0.conv1.weight"])
    assert torch.equal(new["stem.1.weight"], before["stem.1.weight"])
    again = interpret.randomise_blocks(model, ["head", "features.2"], seed=3).state_dict()
    assert all(torch.equal(again[k], v) for k, v in new.items())
    with pytest.raises(ValueError, match="no block"):
        interpret.randomise_blocks(model, ["decoder"])


def trained_toy_model():
    """A SmallResNet trained for a few steps to tell a bright left half from a bright right half."""
    torch.manual_seed(0)
    n = 64
    labels = torch.arange(n) % 2
    x = torch.rand(n, 1, 16, 16) * 0.3
    x[labels == 0, :, :, :8] += 0.6
    x[labels == 1, :, :, 8:] += 0.6
    model = SmallResNet(1, 2, widths=(8, 16, 32))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), labels).backward()
        opt.step()
    return model.eval(), (x[:8] * 255).round().to(torch.uint8)


@pytest.mark.parametrize("method", ["saliency", "grad_cam"])
def test_maps_change_under_cascading_randomisation(method):
    """Step 0 matches itself; fully randomised weights give clearly different maps (rank correlation drops)."""
    model, images = trained_toy_model()
    steps = interpret.cascading_randomisation(model, images, method, seed=0)
    assert [label for label, _ in steps] == ["trained", "head", "features.2", "features.1", "features.0", "stem"]
    trained = steps[0][1]
    assert interpret.map_similarity(trained, trained) == {"spearman": pytest.approx(1.0), "ssim": pytest.approx(1.0)}
    last = interpret.map_similarity(trained, steps[-1][1])
    assert last["spearman"] < 0.5 and last["ssim"] < 0.5
    assert all(a.shape == images.shape for _, a in steps)


def test_similarity_measures():
    """Spearman: 1 for a monotone transform, -1 reversed, NaN for a constant map; SSIM 1 for the same map."""
    a = torch.arange(64.0).view(1, 1, 8, 8)
    assert interpret.rank_correlation(a, a**2)[0] == pytest.approx(1.0)
    assert interpret.rank_correlation(a, 100 - a)[0] == pytest.approx(-1.0)
    assert np.isnan(interpret.rank_correlation(a, torch.ones_like(a))[0])
    assert interpret.ssim(a, 3 * a)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        interpret.ssim(a, torch.ones(1, 1, 8, 9))


def test_deletion_curve_endpoints(resnet_and_images):
    """Deletion runs from the intact image's probability to the baseline image's; insertion the other way."""
    model, images = resnet_and_images
    attr = interpret.attribute(model, images, "saliency")
    with torch.no_grad():
        p_image = torch.softmax(model(to_float(images)), 1)
        target = p_image.argmax(1)
        p_base = torch.softmax(model(torch.full_like(to_float(images), 0.5)), 1)
    rows = torch.arange(len(images))
    frac, dele = interpret.deletion_curve(model, images, attr, mode="deletion", steps=8, baseline=0.5)
    _, ins = interpret.deletion_curve(model, images, attr, mode="insertion", steps=8, baseline=0.5)
    assert frac[0] == 0 and frac[-1] == 1 and len(frac) == 9 and dele.shape == (4, 9)
    np.testing.assert_allclose(dele[:, 0], p_image[rows, target], rtol=1e-5)
    np.testing.assert_allclose(dele[:, -1], p_base[rows, target], rtol=1e-5)
    np.testing.assert_allclose(ins[:, 0], p_base[rows, target], rtol=1e-5)
    np.testing.assert_allclose(ins[:, -1], p_image[rows, target], rtol=1e-5)


def test_deletion_removes_the_most_attributed_pixels_first():
    """A model that reads one pixel: deleting by a map that ranks that pixel first kills the score at once."""

    class OnePixel(torch.nn.Module):
        def forward(self, x):
            v = 10 * x[:, 0, 5, 5]
            return torch.stack([-v, v], 1)

    images = torch.full((1, 1, 10, 10), 255, dtype=torch.uint8)
    attr = torch.zeros(1, 1, 10, 10)
    attr[0, 0, 5, 5] = 1.0
    frac, probs = interpret.deletion_curve(OnePixel(), images, attr, target=1, steps=100)
    assert probs[0, 0] > 0.99 and probs[0, 1] == pytest.approx(0.5)
    assert interpret.curve_auc(frac, probs)[0] == pytest.approx(0.5, abs=0.01)
    _, rand = interpret.deletion_curve(OnePixel(), images, None, target=1, steps=100, seed=0)
    assert interpret.curve_auc(frac, rand)[0] > 0.6  # a random order finds the pixel later on average


def test_curve_auc():
    frac = np.linspace(0, 1, 5)
    np.testing.assert_allclose(interpret.curve_auc(frac, np.array([[1.0] * 5, [1, 0.75, 0.5, 0.25, 0]])), [1.0, 0.5])


def test_deletion_curve_rejects_bad_input(resnet_and_images):
    model, images = resnet_and_images
    with pytest.raises(ValueError, match="must have the images' shape"):
        interpret.deletion_curve(model, images, torch.zeros(4, 1, 8, 8))
    with pytest.raises(ValueError, match="'deletion' or 'insertion'"):
        interpret.deletion_curve(model, images, None, mode="both")
    with pytest.raises(ValueError, match="NaN"):
        interpret.deletion_curve(model, images, torch.full((4, 1, 16, 16), float("nan")))


def test_marker_region_corners():
    """A size x size square, margin pixels from the chosen corner."""
    r = interpret.marker_region((10, 12), size=3, corner="top-right", margin=1)
    assert r.sum() == 9 and r[1:4, 8:11].all()
    r = interpret.marker_region((10, 12), size=3, corner="bottom-left", margin=0)
    assert r[7:10, 0:3].all() and r.sum() == 9
    with pytest.raises(ValueError, match="corner must be one of"):
        interpret.marker_region((10, 12), corner="middle")
    with pytest.raises(ValueError, match="does not fit"):
        interpret.marker_region((4, 4), size=5)


def test_burn_marker_only_touches_selected_images_inside_the_region():
    """Selected images get bright pixels inside the region only; others and the input are unchanged."""
    images = torch.full((3, 1, 16, 16), 40, dtype=torch.uint8)
    out = interpret.burn_marker(images, torch.tensor([True, False, True]), size=5, corner="top-right")
    region = torch.from_numpy(interpret.marker_region((16, 16), size=5, corner="top-right"))
    assert torch.equal(out[1], images[1]) and (images == 40).all()
    changed = out[0, 0] != 40
    assert changed.any() and not changed[~region].any() and (out[0, 0][changed] == 255).all()
    assert torch.equal(out[0], out[2])
    with pytest.raises(ValueError, match="uint8"):
        interpret.burn_marker(images.float())
    with pytest.raises(ValueError, match="boolean vector of length 3"):
        interpret.burn_marker(images, torch.tensor([True]))


def test_with_marker_follows_the_class_rates(toy):
    """Rates (0, 1): exactly the class-1 images are tagged; the note says so."""
    data = toy(n=40, size=16)
    marked, tagged = interpret.with_marker(data, (0.0, 1.0), size=4)
    assert torch.equal(tagged, data.labels == 1)
    assert torch.equal(marked.images[~tagged], data.images[~tagged])
    assert not torch.equal(marked.images[tagged], data.images[tagged])
    assert "corner tag" in marked.note and torch.equal(marked.labels, data.labels)
    with pytest.raises(ValueError, match="one per class"):
        interpret.with_marker(data, (0.5,))


def test_attribution_share():
    """All mass inside the region -> 1; uniform map -> the region's area share; zero map -> NaN."""
    region = interpret.marker_region((10, 10), size=5, corner="top-left", margin=0)
    inside = torch.from_numpy(region).float().view(1, 1, 10, 10)
    maps = torch.cat([inside, torch.ones(1, 1, 10, 10), torch.zeros(1, 1, 10, 10)])
    share = interpret.attribution_share(maps, region)
    assert share[0] == pytest.approx(1.0) and share[1] == pytest.approx(region.mean()) and np.isnan(share[2])
    with pytest.raises(ValueError, match="height and width"):
        interpret.attribution_share(maps, region[:5])

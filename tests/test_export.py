"""Tests of dlmi.export: exports agree with PyTorch, latency figures, model cards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlmi import export
from dlmi.models import SmallCNN, SmallResNet
from dlmi.train import predict_logits, to_float


@pytest.fixture(params=["SmallCNN", "SmallResNet"])
def model_and_images(request):
    """An untrained model in eval mode (batch norm with non-trivial running statistics) and 37 uint8 images."""
    torch.manual_seed(0)
    model = {"SmallCNN": SmallCNN(1, 2), "SmallResNet": SmallResNet(1, 3, widths=(8, 16), blocks=(1, 1))}[request.param]
    for m in model.modules():  # make eval-mode batch norm differ from train mode
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    images = torch.randint(0, 256, (37, 1, 28, 28), dtype=torch.uint8)
    return model.eval(), images


def test_torchscript_agrees(model_and_images, tmp_path):
    model, images = model_and_images
    path = export.to_torchscript(model, images, tmp_path / "m.pt")
    loaded = export.load_torchscript(path)
    with torch.no_grad():
        out = loaded(to_float(images))
    check = export.agreement(predict_logits(model, images), out)
    assert check["max_abs_logit_diff"] < 1e-5 and check["same_class"] == 1.0


def test_onnx_agrees_with_variable_batch(model_and_images, tmp_path):
    """Exported from one image, run on batches of 16 (and a last batch of 5): same logits as PyTorch."""
    model, images = model_and_images
    path = export.to_onnx(model, images, tmp_path / "m.onnx")
    session = export.onnx_session(path)
    out = export.onnx_logits(session, images, batch_size=16)
    assert out.shape == (37, model.head[-1].out_features)
    check = export.agreement(predict_logits(model, images), out)
    assert check["max_abs_logit_diff"] < 1e-4 and check["same_class"] == 1.0


def test_training_mode_export_would_disagree(model_and_images):
    """The check detects a wrong model: train-mode batch norm gives other logits than eval mode."""
    model, images = model_and_images
    with torch.no_grad():
        wrong = model.train()(to_float(images))
    model.eval()
    assert export.agreement(predict_logits(model, images), wrong)["max_abs_logit_diff"] > 1e-3


def test_agreement_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        export.agreement(torch.zeros(3, 2), torch.zeros(2, 2))


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="to_onnx first"):
        export.onnx_session(tmp_path / "none.onnx")
    with pytest.raises(FileNotFoundError, match="to_torchscript first"):
        export.load_torchscript(tmp_path / "none.pt")


def test_onnx_logits_wants_uint8(model_and_images, tmp_path):
    model, images = model_and_images
    session = export.onnx_session(export.to_onnx(model, images, tmp_path / "m.onnx"))
    with pytest.raises(TypeError, match="uint8"):
        export.onnx_logits(session, to_float(images))


def test_latency_counts_calls():
    calls = []
    out = export.latency_ms(lambda: calls.append(1), repeats=7, warmup=3)
    assert len(calls) == 10
    assert set(out) == {"median", "p90"} and 0 <= out["median"] <= out["p90"]
    with pytest.raises(ValueError, match="positive"):
        export.latency_ms(lambda: None, repeats=0)


def test_model_card_sections():
    card = export.model_card("m", {"Intended use": "teaching", "Data": ["a", "b"], "Metrics": {"AUC": "0.9 [0.8, 1.0]"}})
    assert card.startswith("**Model card: m**")
    assert "**Intended use**\n\nteaching" in card
    assert "- a\n- b" in card
    assert "- AUC: **0.9 [0.8, 1.0]**" in card
    with pytest.raises(ValueError, match="'Limitations' is empty"):
        export.model_card("m", {"Limitations": []})

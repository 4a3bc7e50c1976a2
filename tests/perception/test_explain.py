"""Saliency and Grad-CAM against closed forms on a linear model; overlays on real models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from drivelab.core.errors import ConfigError
from drivelab.perception.centernet import CenterNet, DetectorConfig
from drivelab.perception.classify import Classifier, ClassifierConfig
from drivelab.perception.encoders import build_encoder
from drivelab.perception.explain import (
    cam_layer,
    classifier_target,
    detector_target,
    explain_panel,
    feature_norm_target,
    grad_cam,
    overlay,
    saliency,
)


def _linear_model(weights: torch.Tensor) -> nn.Sequential:
    identity = nn.Conv2d(1, 1, 1, bias=False)
    linear = nn.Linear(weights.numel(), 1)
    with torch.no_grad():
        identity.weight.fill_(1.0)
        linear.weight.copy_(weights.reshape(1, -1))
    return nn.Sequential(identity, nn.Flatten(), linear)


def test_saliency_is_abs_weight_and_grad_cam_is_mean_weighted_input() -> None:
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(4, 6, generator=generator) + 0.3
    model = _linear_model(weights)
    frames = torch.randint(0, 256, (1, 1, 4, 6), dtype=torch.uint8, generator=generator)
    sal = saliency(model, frames, classifier_target(0))[0]
    np.testing.assert_allclose(sal, (weights.abs() / weights.abs().max()).numpy(), rtol=1e-6)
    cam = grad_cam(model, model[0], frames, classifier_target(0))[0]
    expected = np.maximum(weights.mean().item() * frames[0, 0].numpy() / 255.0, 0)
    np.testing.assert_allclose(cam, expected / expected.max(), rtol=1e-5, atol=1e-6)


def test_saliency_follows_the_input_through_a_relu() -> None:
    """Behind a ReLU the gradient reaches only the pixels that switch it on: saliency depends on the frame."""
    gate = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        gate.weight.fill_(1.0)
        gate.bias.fill_(-0.5)  # on for pixels brighter than half-scale
    model = nn.Sequential(gate, nn.ReLU(), nn.Flatten(), nn.Linear(24, 1))
    with torch.no_grad():
        model[3].weight.fill_(1.0)
    bright = torch.zeros(1, 1, 4, 6, dtype=torch.uint8)
    bright[0, 0, 1:3, 2:5] = 200
    sal = saliency(model, bright, classifier_target(0))[0]
    np.testing.assert_array_equal(sal, (bright[0, 0] > 128).numpy().astype(np.float32))
    shifted = torch.roll(bright, shifts=2, dims=3)
    np.testing.assert_array_equal(saliency(model, shifted, classifier_target(0))[0], np.roll(sal, 2, axis=1))


def test_panels_for_classifier_and_detector() -> None:
    torch.manual_seed(0)
    frame = np.random.default_rng(0).integers(0, 256, (64, 128, 1), dtype=np.uint8)
    classifier, detector = Classifier(ClassifierConfig(("a", "b"))), CenterNet(DetectorConfig())
    encoder = build_encoder("nature", 1, 64, 128, 16)
    for model, target, layer in ((classifier, classifier_target(1), classifier.encoder.trunk),
                                 (detector, detector_target(0), detector.backbone.fuse),
                                 (encoder, feature_norm_target(), encoder.trunk)):
        assert cam_layer(model) is layer  # the last feature map before the heads
        panel = explain_panel(model, frame, target, scale=2)
        assert panel.shape == (128, 3 * 256, 3) and panel.dtype == np.uint8
        plain, with_saliency, with_cam = panel[:, :256], panel[:, 256:512], panel[:, 512:]
        np.testing.assert_array_equal(plain, overlay(frame, np.zeros((64, 128)), alpha=0.0, scale=2))
        assert not np.array_equal(with_saliency, plain)  # a heatmap was drawn over the frame
        batch = torch.from_numpy(frame.transpose(2, 0, 1).copy())[None]
        sal = saliency(model, batch, target)[0]
        assert sal.max() == pytest.approx(1.0) and sal.min() >= 0.0
        np.testing.assert_array_equal(with_saliency, overlay(frame, sal, scale=2))
        cam = grad_cam(model, layer, batch, target)[0]
        np.testing.assert_array_equal(with_cam, overlay(frame, cam, scale=2))
    with pytest.raises(ConfigError, match="no Grad-CAM layer known for Linear"):
        cam_layer(nn.Linear(2, 2))


def test_overlay_alpha_zero_is_the_frame() -> None:
    frame = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    out = overlay(frame, np.ones((3, 4)), alpha=0.0, scale=1)
    np.testing.assert_array_equal(out, np.repeat(frame, 3, axis=2))

"""Saliency and Grad-CAM against closed forms on a linear model; overlays on real models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from drivelab.perception.classify import Classifier, ClassifierConfig
from drivelab.perception.detect import CenterNet, DetectorConfig
from drivelab.perception.encoders import build_encoder
from drivelab.perception.explain import (
    cam_layer, classifier_target, detector_target, explain_panel, feature_norm_target, grad_cam, overlay, saliency,
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


def test_panels_for_classifier_and_detector() -> None:
    torch.manual_seed(0)
    frame = np.random.default_rng(0).integers(0, 256, (64, 128, 1), dtype=np.uint8)
    for model, target in ((Classifier(ClassifierConfig(("a", "b"))), classifier_target(1)),
                          (CenterNet(DetectorConfig()), detector_target(0)),
                          (build_encoder("nature", 1, 64, 128, 16), feature_norm_target())):
        panel = explain_panel(model, frame, target, scale=2)
        assert panel.shape == (128, 3 * 256, 3) and panel.dtype == np.uint8
        assert cam_layer(model) is not None
    with pytest.raises(Exception, match="no Grad-CAM layer"):
        cam_layer(nn.Linear(2, 2))


def test_overlay_alpha_zero_is_the_frame() -> None:
    frame = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    out = overlay(frame, np.ones((3, 4)), alpha=0.0, scale=1)
    np.testing.assert_array_equal(out, np.repeat(frame, 3, axis=2))

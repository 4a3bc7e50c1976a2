"""Encoders, checkpoints and the Stable-Baselines3 features extractor."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from drivelab.core.errors import CheckpointError, ConfigError
from drivelab.perception.centernet import CenterNet, DetectorConfig
from drivelab.perception.centernet import checkpoint_spec as detector_spec
from drivelab.perception.checkpoints import read_checkpoint, save_checkpoint
from drivelab.perception.classify import Classifier, ClassifierConfig, load_classifier
from drivelab.perception.classify import checkpoint_spec as classifier_spec
from drivelab.perception.encoders import build_encoder, random_shift
from drivelab.perception.extractor import EncoderExtractor, load_encoder, save_encoder

SPACE = gym.spaces.Box(0, 255, (4, 64, 128), np.uint8)


@pytest.mark.parametrize("name", ["nature", "fast", "centernet"])
def test_encoder_shapes_and_uint8_scaling(name: str) -> None:
    torch.manual_seed(0)
    encoder = build_encoder(name, 4, 64, 128, 96, **({"pool_hw": (4, 8)} if name == "centernet" else {})).eval()
    frames = torch.randint(0, 256, (3, 4, 64, 128), dtype=torch.uint8)
    features = encoder(frames)
    assert features.shape == (3, 96)
    torch.testing.assert_close(features, encoder(frames.float() / 255.0))


def test_bad_encoder_options() -> None:
    with pytest.raises(ConfigError, match="valid encoders"):
        build_encoder("resnet")
    with pytest.raises(ConfigError, match="at least 36x36"):
        build_encoder("nature", 1, 8, 8)
    with pytest.raises(ConfigError, match="unknown encoder config key 'pool'. Valid keys: name, in_channels"):
        build_encoder("fast", pool=(4, 8))
    with pytest.raises(ConfigError, match="'features_dim' must be in"):
        build_encoder("fast", features_dim=0)
    with pytest.raises(ConfigError, match="'height' expects int"):
        build_encoder("fast", height="64")


def test_encoder_round_trip(tmp_path: Path) -> None:
    encoder = build_encoder("fast", 1, 64, 128, 32)
    loaded = load_encoder(save_encoder(tmp_path / "e.safetensors", encoder))
    frames = torch.randint(0, 256, (2, 1, 64, 128), dtype=torch.uint8)
    torch.testing.assert_close(loaded(frames), encoder(frames), rtol=0, atol=0)
    fresh = load_encoder(tmp_path / "e.safetensors", load_weights=False)
    assert not torch.equal(fresh.trunk[0].weight, encoder.trunk[0].weight)


def test_classifier_and_detector_backbones_load_as_encoders(tmp_path: Path) -> None:
    classifier_config = ClassifierConfig(("a", "b"), in_channels=1)
    classifier = Classifier(classifier_config)
    path = save_checkpoint(tmp_path / "cls.safetensors", classifier, classifier_spec(classifier_config))
    frames = torch.randint(0, 256, (2, 1, 64, 128), dtype=torch.uint8)
    torch.testing.assert_close(load_encoder(path)(frames), classifier.encoder(frames), rtol=0, atol=0)

    detector_config = DetectorConfig()
    detector = CenterNet(detector_config).eval()
    path = save_checkpoint(tmp_path / "det.safetensors", detector, detector_spec(detector_config))
    encoder = load_encoder(path).eval()
    torch.testing.assert_close(encoder.feature_map(frames), detector.backbone(frames.float() / 255), rtol=0, atol=0)


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "none.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.safetensors is not a readable"):
        read_checkpoint(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="no drivelab spec"):
        read_checkpoint(tmp_path / "foreign.safetensors")
    # A spec that names another architecture than the stored tensors.
    config = ClassifierConfig(("a", "b"))
    spec = classifier_spec(config)
    spec["model"]["encoder"] = spec["encoder"]["name"] = "nature"
    save_checkpoint(tmp_path / "mismatch.safetensors", Classifier(config), spec)
    with pytest.raises(CheckpointError, match="mismatch.safetensors does not fit the architecture"):
        load_encoder(tmp_path / "mismatch.safetensors")
    with pytest.raises(CheckpointError, match="mismatch.safetensors does not fit the architecture"):
        load_classifier(tmp_path / "mismatch.safetensors")


def test_random_shift_is_a_translation() -> None:
    frames = torch.arange(2 * 1 * 6 * 8, dtype=torch.float32).reshape(2, 1, 6, 8)
    torch.testing.assert_close(random_shift(frames, 0), frames)
    shifted = random_shift(frames, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(frames, (2, 2, 2, 2), mode="replicate")
    for b in range(2):  # each output equals some 6x8 window of the padded frame
        windows = [padded[b, :, dy:dy + 6, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(shifted[b], w) for w in windows)


def test_extractor_per_frame_and_frozen(tmp_path: Path) -> None:
    encoder = build_encoder("fast", 1, 64, 128, 32)
    path = save_encoder(tmp_path / "enc.safetensors", encoder)
    extractor = EncoderExtractor(SPACE, encoder=str(path), features_dim=64, freeze=True)
    assert extractor.frames == 4 and extractor.features_dim == 64
    observations = torch.rand(5, 4, 64, 128)
    features = extractor(observations)
    assert features.shape == (5, 64)
    # Per-frame features feed the fusion layer: frame 2 alone decides its slice.
    per_frame = encoder(observations[:, 2:3])
    fused_input = torch.cat([encoder(observations[:, i:i + 1]) for i in range(4)], dim=1)
    torch.testing.assert_close(extractor.fuse(fused_input), features)
    assert per_frame.shape == (5, 32)
    features.sum().backward()
    assert all(p.grad is None for p in extractor.backbone.parameters())
    assert extractor.fuse[0].weight.grad is not None
    with pytest.raises(ConfigError, match="observations are 32x32"):
        EncoderExtractor(gym.spaces.Box(0, 255, (4, 32, 32), np.uint8), encoder=str(path))


def test_extractor_from_detector_checkpoint(tmp_path: Path) -> None:
    detector = CenterNet(DetectorConfig()).eval()
    path = save_checkpoint(tmp_path / "det.safetensors", detector, detector_spec(DetectorConfig()))
    pretrained = EncoderExtractor(SPACE, encoder=str(path), features_dim=48, freeze=True)
    scratch = EncoderExtractor(SPACE, encoder=str(path), features_dim=48, load_weights=False)
    assert pretrained(torch.rand(2, 4, 64, 128)).shape == (2, 48)
    trunk = pretrained.backbone.trunk.state_dict()
    for key, value in detector.backbone.state_dict().items():
        assert torch.equal(trunk[key], value), key
    assert not torch.equal(scratch.backbone.trunk.stem[0].weight, detector.backbone.stem[0].weight)
    assert sum(p.numel() for p in scratch.parameters()) == sum(p.numel() for p in pretrained.parameters())


def test_extractor_in_sb3_policy(tmp_path: Path) -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    class ImageEnv(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (2, 64, 128), np.uint8)
        action_space = gym.spaces.Discrete(3)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, False, True, {}

    env = make_vec_env(ImageEnv, n_envs=1, seed=0)
    try:
        _learn_with_extractors(env, tmp_path, PPO)
    finally:
        env.close()


def _learn_with_extractors(env: object, tmp_path: Path, PPO: type) -> None:  # noqa: N803 - SB3's class
    policy_kwargs = {"features_extractor_class": EncoderExtractor,
                     "features_extractor_kwargs": {"encoder": "fast", "features_dim": 32, "frame_channels": 1,
                                                   "augment_shift_px": 2}}
    ppo_kwargs = {"n_steps": 16, "batch_size": 8, "n_epochs": 1, "seed": 0, "device": "cpu"}
    model = PPO("CnnPolicy", env, policy_kwargs=policy_kwargs, **ppo_kwargs)
    model.learn(16)
    assert isinstance(model.policy.features_extractor, EncoderExtractor)
    assert model.policy.features_extractor.frames == 2
    # A pretrained, frozen encoder survives PPO's orthogonal initialisation and training unchanged.
    encoder = build_encoder("fast", 1, 64, 128, 32)
    path = save_encoder(tmp_path / "enc.safetensors", encoder)
    policy_kwargs["features_extractor_kwargs"] = {"encoder": str(path), "features_dim": 32, "freeze": True}
    model = PPO("CnnPolicy", env, policy_kwargs=policy_kwargs, **ppo_kwargs)
    model.learn(16)
    for key, value in encoder.state_dict().items():
        assert torch.equal(model.policy.features_extractor.backbone.state_dict()[key], value), key

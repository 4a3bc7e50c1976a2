"""Which Stable-Baselines3 policy network a run uses, built from plain (JSON-able) settings.

Training and export share these two functions, so an exported spec rebuilds exactly the network
that was trained, without pickled classes: the camera encoder is always
``drivelab.perception.extractor.EncoderExtractor``, the heads SB3's MLPs.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, BasePolicy
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.dqn.policies import CnnPolicy as DQNCnnPolicy
from stable_baselines3.dqn.policies import MlpPolicy as DQNMlpPolicy
from stable_baselines3.sac.policies import SACPolicy
from torch import nn

from drivelab.agents.configs import EncoderConfig
from drivelab.agents.errors import ConfigError
from drivelab.perception.extractor import EncoderExtractor


class CameraActorCriticPolicy(ActorCriticCnnPolicy):
    """SB3's CNN actor-critic with an orthogonal init that also works on channels-last weights.

    drivelab encoders keep conv weights in NHWC (channels-last) memory for faster CPU
    convolutions; SB3's ``init_weights`` reshapes weights with ``view`` and fails on them.
    The initialisation itself (orthogonal, SB3's gains, zero bias) is unchanged.
    """

    @staticmethod
    def init_weights(module: nn.Module, gain: float = 1) -> None:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            fresh = torch.empty(module.weight.shape)  # contiguous copy to initialise
            nn.init.orthogonal_(fresh, gain=gain)
            with torch.no_grad():
                module.weight.copy_(fresh)
                if module.bias is not None:
                    module.bias.zero_()


class VectorExtractor(BaseFeaturesExtractor):
    """The ``mlp`` policy's input: a flat vector, or a dict of them concatenated (parking's goal).

    A ``Box`` observation is flattened, as SB3's ``FlattenExtractor`` does. A ``Dict`` one, such
    as parking's ``observation`` / ``achieved_goal`` / ``desired_goal``, is flattened part by part
    and concatenated in sorted key order, so the order a space lists its parts in (an env's, or
    one rebuilt from an export's JSON) cannot change the network's input. No weights: exports of
    either kind load alike.
    """

    def __init__(self, observation_space: gym.Space) -> None:
        if isinstance(observation_space, gym.spaces.Dict):
            self.keys: tuple[str, ...] | None = tuple(sorted(observation_space.spaces))
            size = sum(get_flattened_obs_dim(observation_space.spaces[key]) for key in self.keys)
        else:
            self.keys = None
            size = get_flattened_obs_dim(observation_space)
        super().__init__(observation_space, size)

    def forward(self, observations: Any) -> torch.Tensor:
        if self.keys is None:
            return torch.flatten(observations, start_dim=1)
        return torch.cat([torch.flatten(observations[key], start_dim=1) for key in self.keys], dim=1)


POLICY_CLASSES: dict[tuple[str, str], type[BasePolicy]] = {
    ("ppo", "cnn"): CameraActorCriticPolicy,
    ("ppo", "mlp"): ActorCriticPolicy,
    ("dqn", "cnn"): DQNCnnPolicy,
    ("dqn", "mlp"): DQNMlpPolicy,
    # Behaviour cloning fits PPO's actor-critic, so a clone can start PPO with every weight in place.
    ("bc", "cnn"): CameraActorCriticPolicy,
    ("bc", "mlp"): ActorCriticPolicy,
    ("sac", "mlp"): SACPolicy,  # the actor, both critics and their targets
}
ACTOR_CRITIC_ALGOS = ("ppo", "bc")


def policy_class(algo: str, policy_net: str) -> type[BasePolicy]:
    """The SB3 policy class for an algorithm and a network kind (``cnn`` or ``mlp``)."""
    try:
        return POLICY_CLASSES[(algo, policy_net)]
    except KeyError:
        valid = ", ".join(f"{a}/{p}" for a, p in POLICY_CLASSES)
        raise ConfigError(f"no policy network for {algo}/{policy_net}. Valid: {valid}") from None


def policy_kwargs(
    algo: str,
    policy_net: str,
    net_arch: tuple[int, ...] | list[int],
    encoder: EncoderConfig | None,
    load_encoder_weights: bool = True,
) -> dict[str, Any]:
    """SB3 ``policy_kwargs`` for a run.

    Args:
        algo: ``"ppo"``, ``"bc"`` (both an actor-critic), ``"dqn"`` or ``"sac"``.
        policy_net: ``"cnn"`` (camera frames through a drivelab encoder) or ``"mlp"``.
        net_arch: hidden layer sizes of the heads after the features extractor.
        encoder: the camera encoder (``cnn`` only).
        load_encoder_weights: with an encoder checkpoint path, ``False`` rebuilds only its
            architecture (an export carries all weights itself).
    """
    hidden = list(net_arch)
    kwargs: dict[str, Any] = {"net_arch": {"pi": hidden, "vf": hidden} if algo in ACTOR_CRITIC_ALGOS else hidden}
    if policy_net == "cnn":
        if encoder is None:
            raise ConfigError("a cnn policy needs an encoder config")
        kwargs["features_extractor_class"] = EncoderExtractor
        kwargs["features_extractor_kwargs"] = {
            "encoder": encoder.name,
            "features_dim": encoder.features_dim,
            "freeze": encoder.freeze,
            "augment_shift_px": encoder.augment_shift_px,
            "load_weights": load_encoder_weights,
        }
    else:
        kwargs["features_extractor_class"] = VectorExtractor
    return kwargs

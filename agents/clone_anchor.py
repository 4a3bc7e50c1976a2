"""A decaying KL penalty that keeps PPO near the clone it started from (``clone_kl_coef``).

PPO started from a behaviour clone (``init_from``) can unlearn it in its first updates, while
the critic and the advantages are still poor. With ``clone_kl_coef`` > 0 every PPO minibatch loss
gets ``coef(t) * mean KL(clone(.|s) || policy(.|s))`` over the minibatch's frames, where
``coef(t)`` falls linearly from ``clone_kl_coef`` to 0 over ``clone_kl_decay_steps`` env steps:
early updates stay near the clone, later ones are plain PPO. (Kickstarting, Schmitt et al. 2018,
anneals a distillation term the same way.)

SB3's PPO loop is used unchanged: its loss is ``policy + ent_coef * entropy_loss + vf_coef *
value``, with ``entropy_loss = -mean(entropy)`` from ``policy.evaluate_actions``. The anchor
replaces that method on the policy instance by one that returns ``entropy - coef / ent_coef * KL``
per sample, which adds exactly ``coef * mean(KL)`` to the loss (so ``ppo.ent_coef`` must be > 0).
SB3's ``train/entropy_loss`` then includes the penalty; the KL and its weight are logged apart
(``losses/clone_kl``, ``losses/clone_kl_coef`` in metrics.jsonl). The clone's network is frozen, kept outside the
policy (exports and checkpoints hold the PPO policy only) and loaded again on resume.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy
from torch.distributions import kl_divergence


def clone_kl(clone_policy: ActorCriticPolicy, policy: ActorCriticPolicy, observations: torch.Tensor,
             distribution: Any = None) -> torch.Tensor:
    """KL(clone || policy) per observation, shape (N,); summed over action dimensions."""
    with torch.no_grad():
        target = clone_policy.get_distribution(observations).distribution
    current = (distribution or policy.get_distribution(observations)).distribution
    kl = kl_divergence(target, current)
    return kl.sum(dim=-1) if kl.dim() > 1 else kl


class CloneAnchor:
    """Holds the frozen clone and the current weight; installed on a PPO model's policy."""

    def __init__(self, model: PPO, clone_policy: ActorCriticPolicy, coef: float, decay_steps: int) -> None:
        if model.ent_coef <= 0:
            raise ValueError("the clone's KL term rides on PPO's entropy term: ppo.ent_coef must be > 0")
        self.model = model
        self.clone = copy.deepcopy(clone_policy).to(model.device).eval()
        for parameter in self.clone.parameters():
            parameter.requires_grad_(False)
        self.initial_coef = coef
        self.decay_steps = decay_steps
        self.coef = self.coef_at(model.num_timesteps)
        self.kl_values: list[float] = []
        policy = model.policy
        plain = policy.evaluate_actions

        def evaluate_actions(obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
            if self.coef <= 0:
                return plain(obs, actions)
            distribution, values = _distribution_and_values(policy, obs)
            kl = clone_kl(self.clone, policy, obs, distribution)
            self.kl_values.append(float(kl.mean().detach()))
            entropy = distribution.entropy()
            entropy = torch.zeros_like(kl) if entropy is None else entropy
            return values, distribution.log_prob(actions), entropy - self.coef / model.ent_coef * kl

        policy.evaluate_actions = evaluate_actions  # instance attribute: state_dict and exports unchanged

    def coef_at(self, step: int) -> float:
        """The KL weight after ``step`` env steps: linear from the initial weight to 0."""
        return self.initial_coef * max(0.0, 1.0 - step / self.decay_steps)


def _distribution_and_values(policy: ActorCriticPolicy, obs: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """The action distribution and values of ``obs`` from one forward pass (as SB3's evaluate_actions)."""
    features = policy.extract_features(obs)
    if policy.share_features_extractor:
        latent_pi, latent_vf = policy.mlp_extractor(features)
    else:
        latent_pi = policy.mlp_extractor.forward_actor(features[0])
        latent_vf = policy.mlp_extractor.forward_critic(features[1])
    return policy._get_action_dist_from_latent(latent_pi), policy.value_net(latent_vf)


class CloneKLSchedule(BaseCallback):
    """Sets the anchor's weight for each rollout's update and logs the KL of the last update."""

    def __init__(self, anchor: CloneAnchor) -> None:
        super().__init__()
        self.anchor = anchor

    def _on_rollout_end(self) -> None:  # the update that follows uses this weight
        if self.anchor.kl_values:
            self.logger.record("train/clone_kl", float(np.mean(self.anchor.kl_values)))
            self.anchor.kl_values.clear()
        self.anchor.coef = self.anchor.coef_at(self.model.num_timesteps)
        self.logger.record("train/clone_kl_coef", self.anchor.coef)

    def _on_step(self) -> bool:
        return True

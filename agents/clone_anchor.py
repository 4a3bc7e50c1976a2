"""Decaying terms that keep PPO (a KL, ``clone_kl_coef``) or DQN (a large margin, ``clone_margin_coef``) near the clone.

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

DQN started from a clone drives faster than it and crashes more (BC -> DQN: 17-20 % crashes where
the clone had 4-12 %). With ``clone_margin_coef`` > 0, each DQN gradient step adds
``coef(t) * mean_s [max_a (Q(s, a) + m * [a != c(s)]) - Q(s, c(s))]`` on the replayed frames, where
c(s) is the frozen clone's greedy action and m = ``clone_margin``: the large-margin loss of DQfD
(Hester et al. 2018), which is zero once the clone's action leads every other by m. DQfD applies it
to demonstrations only; here the clone labels every replayed frame, as the PPO KL term does, and
``coef(t)`` decays over ``clone_kl_decay_steps`` the same way. ``CloneMargin`` replaces the model
instance's ``train`` by the DQN update (SB3's one-step TD target on the target network, Huber loss,
gradient clipping) plus that term; at weight 0 it calls SB3's own ``DQN.train``.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import DQN, PPO
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
        return linear_decay(self.initial_coef, step, self.decay_steps)


def linear_decay(initial: float, step: int, decay_steps: int) -> float:
    """``initial`` at step 0, falling linearly to 0 at ``decay_steps`` and staying there."""
    return initial * max(0.0, 1.0 - step / decay_steps)


def clone_actions(clone_policy: ActorCriticPolicy, observations: torch.Tensor) -> torch.Tensor:
    """The clone's greedy (most probable) discrete actions, shape (N,)."""
    with torch.no_grad():
        return clone_policy.get_distribution(observations).distribution.logits.argmax(dim=-1)


def margin_loss(q_values: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Per-row ``max_a (Q(s, a) + margin * [a != label]) - Q(s, label)`` (>= 0; 0 when the label leads by margin)."""
    penalties = torch.full_like(q_values, margin)
    penalties.scatter_(1, labels.long().view(-1, 1), 0.0)
    chosen = q_values.gather(1, labels.long().view(-1, 1)).squeeze(1)
    return (q_values + penalties).max(dim=1).values - chosen


class CloneMargin:
    """Holds the frozen clone; replaces a DQN model's ``train`` by the update plus the decaying margin term."""

    def __init__(self, model: DQN, clone_policy: ActorCriticPolicy, coef: float, margin: float,
                 decay_steps: int) -> None:
        self.model = model
        self.clone = copy.deepcopy(clone_policy).to(model.device).eval()
        for parameter in self.clone.parameters():
            parameter.requires_grad_(False)
        self.initial_coef, self.margin, self.decay_steps = coef, margin, decay_steps
        self.coef = self.coef_at(model.num_timesteps)
        # Instance attributes, left out of the saved model: checkpoints hold a plain DQN (as PPO's hold the policy)
        plain_excluded = model._excluded_save_params
        model.train = self.train
        model._excluded_save_params = lambda: [*plain_excluded(), "train", "_excluded_save_params"]

    def coef_at(self, step: int) -> float:
        """The margin term's weight after ``step`` env steps: linear from the initial weight to 0."""
        return linear_decay(self.initial_coef, step, self.decay_steps)

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """SB3's DQN update with ``coef * mean margin_loss`` added to each step's Huber TD loss."""
        model = self.model
        self.coef = self.coef_at(model.num_timesteps)
        model.logger.record("train/clone_margin_coef", self.coef)
        if self.coef <= 0:
            DQN.train(model, gradient_steps, batch_size)
            return
        model.policy.set_training_mode(True)
        model._update_learning_rate(model.policy.optimizer)
        td_losses, margins = [], []
        for _ in range(gradient_steps):
            batch = model.replay_buffer.sample(batch_size, env=model._vec_normalize_env)
            discounts = batch.discounts if batch.discounts is not None else model.gamma
            with torch.no_grad():
                next_q = model.q_net_target(batch.next_observations).max(dim=1).values.reshape(-1, 1)
                targets = batch.rewards + (1 - batch.dones) * discounts * next_q
            q_values = model.q_net(batch.observations)
            td_loss = F.smooth_l1_loss(q_values.gather(1, batch.actions.long()), targets)
            margin = margin_loss(q_values, clone_actions(self.clone, batch.observations), self.margin).mean()
            loss = td_loss + self.coef * margin
            model.policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.policy.parameters(), model.max_grad_norm)
            model.policy.optimizer.step()
            td_losses.append(td_loss.item())
            margins.append(margin.item())
        model._n_updates += gradient_steps
        model.logger.record("train/n_updates", model._n_updates, exclude="tensorboard")
        model.logger.record("train/loss", float(np.mean(td_losses)))
        model.logger.record("train/clone_margin", float(np.mean(margins)))


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

"""drivelab.agents: PPO and DQN from camera frames, baselines, checkpoints and weights-only export.

Every policy, trained or rule-based, is a ``Policy``: ``act(observation (B, ...), env) -> (B,)``
plus ``reset(mask)``. Train with ``train(load_train_config(env_id, algo, overrides), run_dir)``
or ``drivelab train``; load any export with ``load_policy(path)``.
"""

from drivelab.agents.configs import (
    ALGOS,
    EVAL_SEED_BASE,
    PROTOCOL_SEED_BASE,
    TRAIN_SEED_LIMIT,
    DQNConfig,
    EncoderConfig,
    PPOConfig,
    TrainConfig,
    load_train_config,
)
from drivelab.agents.errors import CheckpointError, ConfigError, PolicySpecError, RunDirError
from drivelab.agents.evaluation import EvalResult, run_episodes
from drivelab.agents.export import export_policy, load_policy, read_spec
from drivelab.agents.policies import (
    BASELINES,
    IDMMobilPolicy,
    IdlePolicy,
    Policy,
    RandomPolicy,
    TrainedPolicy,
    make_baseline,
)
from drivelab.agents.train import TrainResult, train

__all__ = [
    "ALGOS", "BASELINES", "CheckpointError", "ConfigError", "DQNConfig", "EVAL_SEED_BASE",
    "EncoderConfig", "EvalResult", "IDMMobilPolicy", "IdlePolicy", "PPOConfig", "PROTOCOL_SEED_BASE",
    "Policy", "PolicySpecError", "RandomPolicy", "RunDirError", "TRAIN_SEED_LIMIT", "TrainConfig",
    "TrainResult", "TrainedPolicy", "export_policy", "load_policy", "load_train_config",
    "make_baseline", "read_spec", "run_episodes", "train",
]

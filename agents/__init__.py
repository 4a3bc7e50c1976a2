"""drivelab.agents: PPO and DQN from camera frames, baselines, the episode runner and policy loading.

Every policy, trained or rule-based, is a ``Policy``: ``act(observation (B, ...), env,
deterministic) -> (B,)`` plus ``reset(mask)`` and ``check_env(env)``. Train with
``train(load_train_config(env_id, algo, overrides), run_dir)`` or ``drivelab train``; load any
policy with ``load_policy(label)`` (the one loader, with the safety checks) and evaluate it with
``evaluate(policy, env_id)`` (the one episode runner) on the protocol's held-out seeds.
"""

from drivelab.agents.configs import (
    ALGOS,
    DQNConfig,
    EncoderConfig,
    PPOConfig,
    SACConfig,
    TrainConfig,
    load_train_config,
)
from drivelab.agents.errors import (
    CheckpointError,
    ConfigError,
    PolicyLoadError,
    PolicySpecError,
    RunDirError,
    UnsafePolicyFileError,
)
from drivelab.agents.evaluation import DRIVING_FIELDS, EpisodeRecord, EvaluationResult, evaluate
from drivelab.agents.export import export_policy
from drivelab.agents.loading import (
    BASELINE_PREFIX,
    env_kwargs_from_spec,
    find_run_config,
    load_policy,
    policy_file_format,
)
from drivelab.agents.policies import (
    BASELINES,
    IdlePolicy,
    IDMMobilPolicy,
    Policy,
    PolicySource,
    RandomPolicy,
    TrainedPolicy,
    make_baseline,
)
from drivelab.agents.protocol import (
    DEFAULT_PROTOCOL,
    PROTOCOL_SEED_BASE,
    SELECTION_SEED_BASE,
    TRAIN_SEED_LIMIT,
    EvalProtocol,
    ProtocolError,
    available_protocols,
    load_protocol,
)
from drivelab.agents.spec import read_spec
from drivelab.agents.train import TrainResult, train

__all__ = [
    "ALGOS", "BASELINES", "BASELINE_PREFIX", "CheckpointError", "ConfigError", "DEFAULT_PROTOCOL", "DQNConfig",
    "DRIVING_FIELDS", "EncoderConfig", "EpisodeRecord", "EvalProtocol", "EvaluationResult", "IDMMobilPolicy",
    "IdlePolicy", "PPOConfig", "SACConfig", "PROTOCOL_SEED_BASE", "Policy", "PolicyLoadError", "PolicySource",
    "PolicySpecError", "ProtocolError", "RandomPolicy", "RunDirError", "SELECTION_SEED_BASE", "TRAIN_SEED_LIMIT",
    "TrainConfig", "TrainResult", "TrainedPolicy", "UnsafePolicyFileError", "available_protocols",
    "env_kwargs_from_spec", "evaluate", "export_policy", "find_run_config", "load_policy", "load_protocol",
    "load_train_config", "make_baseline", "policy_file_format", "read_spec", "train",
]

"""Fuzzing the readers of untrusted input: nothing but a ``DrivelabError`` escapes.

The policy spec reader (what a submitter controls) and the typed config parser on
``TrainConfig`` (what ``--set`` and a hyperparameter YAML control) get arbitrary JSON-like
values; whatever they refuse must be refused with a ``DrivelabError``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivelab.agents import TrainConfig
from drivelab.agents.spec import PolicySpec, check_spec, read_spec
from drivelab.core.config import from_mapping
from drivelab.core.errors import DrivelabError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
# A spec that passes every check (an mlp policy needs no encoder), to mutate one field at a time.
VALID_SPEC = {
    "format": "drivelab-policy", "format_version": 1, "algo": "ppo", "policy_net": "mlp", "net_arch": [8],
    "encoder": None, "env_id": "drivelab/highway-fast-v0", "seed": 0, "observation": "native", "camera": {},
    "env_config": {}, "observation_space": {"type": "box", "shape": [5, 5], "dtype": "float32",
                                            "low": "-inf", "high": "inf"},
    "action_space": {"type": "discrete", "n": 5, "start": 0}, "weights": "policy.safetensors",
    "weights_sha256": "0" * 64, "encoder_file": None, "num_timesteps": 0,
}
SPEC_KEYS = st.sampled_from(sorted(PolicySpec.__dataclass_fields__))
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_drivelab_errors(call) -> None:
    try:
        call()
    except DrivelabError:
        pass


def test_the_valid_spec_is_valid():
    check_spec(VALID_SPEC, "fuzz")


@FUZZ
@given(key=SPEC_KEYS, value=JSON)
def test_spec_with_one_field_fuzzed(key, value):
    _only_drivelab_errors(lambda: check_spec({**VALID_SPEC, key: value}, "fuzz"))


@FUZZ
@given(spec=st.dictionaries(SPEC_KEYS | st.text(max_size=8), JSON, max_size=8))
def test_spec_of_random_fields(spec):
    _only_drivelab_errors(lambda: check_spec(spec, "fuzz"))


@FUZZ
@given(data=st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
def test_spec_file_of_random_bytes(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "policy.json"
        path.write_bytes(data)
        _only_drivelab_errors(lambda: read_spec(path))
        assert sorted(os.listdir(folder)) == ["policy.json"]


TRAIN_KEYS = st.sampled_from(sorted(TrainConfig.__dataclass_fields__))
SECTION_KEYS = st.sampled_from(["n_envs", "n_steps", "batch_size", "learning_rate", "gamma", "gae_lambda",
                                "net_arch", "buffer_size", "name", "features_dim", "augment_shift_px"])


@FUZZ
@given(
    values=st.dictionaries(TRAIN_KEYS, JSON, max_size=6),
    section=st.sampled_from(["ppo", "dqn", "encoder"]),
    section_values=st.dictionaries(SECTION_KEYS, JSON, max_size=3),
)
def test_train_config_from_random_values(values, section, section_values):
    base = {"env_id": "drivelab/highway-fast-v0", "algo": "ppo"}
    _only_drivelab_errors(lambda: from_mapping(TrainConfig, {**base, **values}, "train config"))
    _only_drivelab_errors(lambda: from_mapping(TrainConfig, {**base, section: section_values}, "train config"))

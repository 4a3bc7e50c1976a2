"""The evaluation protocol: published seeds, disjoint seed ranges, refusals."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from drivelab.agents import configs, protocol
from drivelab.agents.protocol import ProtocolError, load_protocol

ENV_ID = "drivelab/highway-fast-v0"


def test_protocol_v1_is_published_and_disjoint_from_training():
    spec = load_protocol("drivelab-eval-v1")
    assert spec.version == "drivelab-eval-v1"
    assert spec.episodes == 100 and spec.deterministic_actions
    assert spec.reference_backend == "highway-env" and "envpool" in spec.backends
    assert len(spec.env_ids) == 15 and ENV_ID in spec.env_ids  # 11 scenarios and 4 variants
    assert spec.seeds_for(ENV_ID) == tuple(range(10_000_000, 10_000_100))
    every_seed = {s for env_id in spec.env_ids for s in spec.seeds_for(env_id)}
    assert min(every_seed) >= spec.training_seed_limit == 1_000_000
    assert protocol.is_training_seed_allowed(0) and protocol.is_training_seed_allowed(999_999)
    assert not protocol.is_training_seed_allowed(1_000_000)
    assert not protocol.is_training_seed_allowed(-1)
    protocol.assert_disjoint(range(0, 1_000_000, 997))
    with pytest.raises(ProtocolError, match="10000003"):
        protocol.assert_disjoint([5, 10_000_003])


def test_protocol_rejects_unknown_version_env_and_counts():
    with pytest.raises(ProtocolError, match="drivelab-eval-v1"):
        load_protocol("drivelab-eval-v0")
    spec = load_protocol()
    with pytest.raises(ProtocolError, match="valid"):
        spec.seeds_for("drivelab/nowhere-v0")
    with pytest.raises(ProtocolError, match=r"\[1, 100\]"):
        spec.seeds_for(ENV_ID, 101)


def test_seed_ranges_come_from_the_protocol_json_alone():
    raw = json.loads((resources.files("drivelab.agents") / "protocols" / "drivelab-eval-v1.json").read_text())
    assert protocol.TRAIN_SEED_LIMIT == raw["training_seed_limit"]
    assert protocol.SELECTION_SEED_BASE == raw["selection_seed_base"]
    assert protocol.PROTOCOL_SEED_BASE == raw["evaluation_seed_floor"]
    assert configs.TRAIN_SEED_LIMIT is protocol.TRAIN_SEED_LIMIT
    assert configs.TrainConfig.__dataclass_fields__["eval_seed"].default == protocol.SELECTION_SEED_BASE
    # training < selection < protocol: the three seed sets never meet
    assert protocol.TRAIN_SEED_LIMIT <= protocol.SELECTION_SEED_BASE < protocol.PROTOCOL_SEED_BASE


def test_protocol_with_overlapping_ranges_is_refused():
    spec = load_protocol()
    fields = {name: getattr(spec, name) for name in spec.__dataclass_fields__}
    with pytest.raises(ProtocolError, match="disjoint"):
        protocol.EvalProtocol(**{**fields, "selection_seed_base": spec.evaluation_seed_floor})
    with pytest.raises(ProtocolError, match="distinct"):
        protocol.EvalProtocol(**{**fields, "seeds": {ENV_ID: [5]}})


def test_the_protocol_publishes_seeds_for_every_registered_scenario():
    import drivelab.envs as de
    from drivelab.agents.protocol import load_protocol

    protocol = load_protocol()
    assert set(protocol.env_ids) == set(de.ENV_IDS)
    assert all(len(protocol.seeds_for(env_id)) == protocol.episodes for env_id in de.ENV_IDS)

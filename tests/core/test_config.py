"""The one config parser: types from annotations, bounds, dotted error paths, overrides."""

import dataclasses
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivelab.core.config import apply_overrides, bounded, from_mapping, parse_overrides, read_yaml_mapping, to_plain
from drivelab.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Inner:
    lr: float = bounded(1e-3, low=0, low_open=True)
    layers: tuple[int, ...] = bounded((64,), low=1)


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str
    algo: Literal["ppo", "dqn"] = "ppo"
    epochs: int = bounded(10, low=1, high=1000)
    gamma: float = bounded(0.9, low=0, high=1, low_open=True)
    verbose: bool = False
    inner: Inner = dataclasses.field(default_factory=Inner)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int | None = None


def test_builds_nested_configs_and_converts_lists_and_ints():
    config = from_mapping(Outer, {"name": "a", "gamma": 1, "inner": {"layers": [32, 16]}}, "test config")
    assert config == Outer(name="a", gamma=1.0, inner=Inner(layers=(32, 16)))
    assert isinstance(config.gamma, float)
    assert to_plain(config)["inner"] == {"lr": 1e-3, "layers": [32, 16]}
    assert from_mapping(Outer, to_plain(config), "test config") == config


@pytest.mark.parametrize("values, message", [
    ({"name": "a", "epochs": "20"}, r"'epochs' expects int, got '20'"),
    ({"name": "a", "epochs": 0}, r"'epochs' must be in \[1, 1000\]"),
    ({"name": "a", "gamma": 1.5}, r"'gamma' must be in \(0, 1\]"),
    ({"name": "a", "gamma": float("nan")}, r"'gamma' expects float"),
    ({"name": "a", "algo": "sac"}, r"'algo' expects one of 'ppo', 'dqn'"),
    ({"name": "a", "verbose": 1}, r"'verbose' expects bool"),
    ({"name": "a", "inner": {"lr": -1}}, r"'inner.lr' must be in \(0, inf\]"),
    ({"name": "a", "inner": {"layers": [64, -5]}}, r"'inner.layers' must be in \[1, inf\]"),
    ({"name": "a", "inner": {"layers": "abc"}}, r"'inner.layers' expects tuple"),
    ({"name": "a", "inner": {"lrr": 1}}, r"unknown test config key 'inner.lrr'. Valid keys of inner: lr, layers"),
    ({"name": "a", "epoch": 3}, r"unknown test config key 'epoch'. Valid keys: name, algo"),
    ({"epochs": 3}, r"missing required keys: name"),
    ({"name": "a", "epochs": 10**30}, r"'epochs' expects int"),
    ({"name": "a", "inner": 5}, r"inner must be a mapping"),
])
def test_refuses_with_the_dotted_key_and_what_is_valid(values, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping(Outer, values, "test config")


def test_overrides_are_yaml_values_on_dotted_paths():
    overrides = parse_overrides(["inner.lr=0.01", "algo=dqn", "inner.layers=[8, 8]", "seed=null"])
    assert overrides == {"inner.lr": 0.01, "algo": "dqn", "inner.layers": [8, 8], "seed": None}
    merged = apply_overrides({"name": "a", "inner": {"lr": 1.0}}, overrides)
    assert from_mapping(Outer, merged, "c") == Outer(name="a", algo="dqn", inner=Inner(lr=0.01, layers=(8, 8)))
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["novalue"])


def test_yaml_files_must_hold_a_mapping_and_no_python_tags(tmp_path):
    (tmp_path / "ok.yaml").write_text("a: 1\n")
    assert read_yaml_mapping(tmp_path / "ok.yaml", "hyperparameters") == {"a": 1}
    (tmp_path / "list.yaml").write_text("- 1\n")
    (tmp_path / "tag.yaml").write_text("a: !!python/object/apply:os.system ['true']\n")
    cases = (("list.yaml", "must hold a mapping"), ("tag.yaml", "invalid YAML"), ("none.yaml", "cannot read"))
    for name, message in cases:
        with pytest.raises(ConfigError, match=message):
            read_yaml_mapping(tmp_path / name, "hyperparameters")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "algo", "epochs", "gamma", "inner", "extra", "seed", "x"]),
                       json_values, max_size=6))
def test_nothing_but_a_config_error_escapes(values):
    try:
        from_mapping(Outer, values, "fuzzed config")
    except ConfigError:
        pass

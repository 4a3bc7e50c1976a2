"""The zoo: trained agents shipped inside drivelab, loadable by name as ``zoo:ALGO/SCENARIO``.

Each agent is a weights-only export (``policy.safetensors`` + ``policy.json``, as written by
``drivelab.agents.export``) in ``agents/zoo/<algo>/<scenario>/``, next to its model card
(``README.md``: scenario, algorithm, observation, protocol metrics with confidence intervals,
training command, steps, wall time, hardware, commit) and a short video of one episode
(``episode.mp4``). ``card.json`` holds the card's numbers for ``drivelab zoo list``.

Nothing is downloaded: the zoo is package data. ``SCENARIO`` is the scenario's short name
(``highway-fast``, ``merge``, ...), as in ``agents/hyperparams/<scenario>.yaml``.

Example:
    >>> from drivelab.agents import load_policy                      # doctest: +SKIP
    >>> policy = load_policy("zoo:ppo/highway-fast")                 # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivelab.agents.errors import PolicyLoadError

ZOO_PREFIX = "zoo:"
ZOO_DIR = Path(__file__).resolve().parent / "zoo"
CARD_JSON = "card.json"


@dataclass(frozen=True)
class ZooAgent:
    """One shipped agent: where its export lives and what its card says."""

    algo: str
    scenario: str
    folder: Path
    card: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{ZOO_PREFIX}{self.algo}/{self.scenario}"


def agents(zoo_dir: Path | None = None) -> list[ZooAgent]:
    """Every agent in the zoo (default: the package's), sorted by scenario then algorithm."""
    zoo_dir = ZOO_DIR if zoo_dir is None else zoo_dir
    found = []
    for spec in sorted(zoo_dir.glob("*/*/policy.json")):
        folder = spec.parent
        card_path = folder / CARD_JSON
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        found.append(ZooAgent(folder.parent.name, folder.name, folder, card))
    return sorted(found, key=lambda agent: (agent.scenario, agent.algo))


def resolve(label: str, zoo_dir: Path | None = None) -> Path:
    """The export folder of ``zoo:ALGO/SCENARIO``.

    Raises:
        PolicyLoadError: a malformed name or one the zoo does not have (the message lists
            the agents it has).
    """
    zoo_dir = ZOO_DIR if zoo_dir is None else zoo_dir
    name = label[len(ZOO_PREFIX):] if label.startswith(ZOO_PREFIX) else label
    algo, _, scenario = name.partition("/")
    available = ", ".join(agent.label for agent in agents(zoo_dir)) or "none"
    if not algo or not scenario or "/" in scenario or algo in (".", "..") or scenario in (".", ".."):
        raise PolicyLoadError(f"zoo names are zoo:ALGO/SCENARIO (e.g. zoo:ppo/highway-fast), got {label!r}; "
                              f"the zoo has: {available}")
    folder = zoo_dir / algo / scenario
    if not (folder / "policy.json").is_file():
        raise PolicyLoadError(f"the zoo has no {label!r}; it has: {available} (see `drivelab zoo list`)")
    return folder

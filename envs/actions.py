"""highway-env's DiscreteMetaAction indices and names (``ACTIONS_ALL``), in one place."""

from __future__ import annotations

LANE_LEFT, IDLE, LANE_RIGHT, FASTER, SLOWER = 0, 1, 2, 3, 4
META_ACTION_NAMES: tuple[str, ...] = ("LANE_LEFT", "IDLE", "LANE_RIGHT", "FASTER", "SLOWER")
# DiscreteMetaAction with longitudinal actions only (intersection): SLOWER, IDLE, FASTER.
LONGITUDINAL_ACTION_NAMES: tuple[str, ...] = ("SLOWER", "IDLE", "FASTER")


def action_label(action: int, num_actions: int) -> str:
    """The meta-action name of ``action`` in a ``Discrete(num_actions)`` space, else its number."""
    names = {5: META_ACTION_NAMES, 3: LONGITUDINAL_ACTION_NAMES}.get(num_actions)
    return names[action] if names is not None and 0 <= action < len(names) else str(action)

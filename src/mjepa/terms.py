"""Names of the 9 loss terms and which of them an objective configuration turns on."""

from __future__ import annotations

from typing import Protocol


class ObjectiveSwitches(Protocol):
    """What these functions read of an objective configuration (``mjepa.config.ObjectiveConfig``)."""

    cross_modal: str
    joint_av: bool


# The modes' names where users meet them (command lines, result files) and the mode each selects.
MODE_OF_MODALITY = {"audio": "A", "video": "V", "av": "AV"}
MODALITIES = tuple(MODE_OF_MODALITY)

INTRA_TERMS = ("intra_A", "intra_V", "intra_AV")
# Ordered pairs (source mode, target mode) of the six cross-modal predictors.
CROSS_PAIRS = (("A", "V"), ("V", "A"), ("A", "AV"), ("V", "AV"), ("AV", "A"), ("AV", "V"))
CROSS_TERMS = tuple(f"cross_{s}_to_{t}" for s, t in CROSS_PAIRS)
ALL_TERMS = INTRA_TERMS + CROSS_TERMS


def cross_term(source: str, target: str) -> str:
    return f"cross_{source}_to_{target}"


def level_term(mode: str, block: int) -> str:
    """Name of the logged intra-modal term of one target level: ``intra_A_layer6`` for the output of block 6
    (1-based, as layers are usually counted) of mode A."""
    return f"intra_{mode}_layer{block + 1}"


def active_modes(objective: ObjectiveSwitches) -> tuple[str, ...]:
    return ("A", "V", "AV") if objective.joint_av else ("A", "V")


def active_cross_pairs(objective: ObjectiveSwitches) -> tuple[tuple[str, str], ...]:
    if objective.cross_modal == "none":
        return ()
    if objective.cross_modal == "av":
        return (("A", "V"), ("V", "A"))
    modes = active_modes(objective)
    return tuple((s, t) for s, t in CROSS_PAIRS if s in modes and t in modes)


def active_terms(objective: ObjectiveSwitches) -> tuple[str, ...]:
    """The loss terms that the objective computes under this configuration, in canonical order."""
    intra = tuple(f"intra_{m}" for m in active_modes(objective))
    cross = tuple(cross_term(s, t) for s, t in active_cross_pairs(objective))
    return intra + cross


def mode_uses_audio(mode: str) -> bool:
    return "A" in mode


def mode_uses_video(mode: str) -> bool:
    return "V" in mode

"""Spinal Instability Neoplastic Score (SINS).

Source: Fisher CG, DiPaola CP, Ryken TC, et al. A novel classification system for spinal
instability in neoplastic disease: an evidence-based approach and expert consensus from the
Spine Oncology Study Group. Spine 2010;35(22):E1221-9.

Six components, each scored in points; the total (0 to 18) is banded: 0-6 stable,
7-12 potentially unstable (indeterminate), 13-18 unstable.
"""

from __future__ import annotations

from typing import Literal, Mapping

POINTS: dict[str, dict[str, int]] = {
    "location": {"junctional": 3, "mobile": 2, "semi_rigid": 1, "rigid": 0},
    "pain": {"mechanical": 3, "occasional_non_mechanical": 1, "pain_free": 0},
    "bone_lesion": {"lytic": 2, "mixed": 1, "blastic": 0},
    "alignment": {"subluxation_translation": 4, "de_novo_deformity": 2, "normal": 0},
    "collapse": {"over_50": 3, "under_50": 2, "no_collapse_over_50_involved": 1, "none": 0},
    "posterolateral": {"bilateral": 3, "unilateral": 1, "none": 0},
}
SINS_COMPONENTS: tuple[str, ...] = tuple(POINTS)

SinsCategory = Literal["stable", "potentially_unstable", "unstable"]


def sins_total(components: Mapping[str, str]) -> int:
    """Sum of the six component points. Every component must be given."""
    return sum(POINTS[name][components[name]] for name in SINS_COMPONENTS)


def sins_category(total: int) -> SinsCategory:
    """Band a SINS total: 0-6 stable, 7-12 potentially unstable, 13-18 unstable."""
    if not 0 <= total <= 18:
        raise ValueError(f"a SINS total is 0..18, not {total}")
    if total <= 6:
        return "stable"
    if total <= 12:
        return "potentially_unstable"
    return "unstable"

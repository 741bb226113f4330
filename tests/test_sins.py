"""SINS (Fisher et al., Spine 2010): points and bands, on both sides of every threshold."""

import pytest

from triage import sins_category, sins_total
from triage._sins import POINTS


@pytest.mark.parametrize("total, category", [
    (0, "stable"), (6, "stable"), (7, "potentially_unstable"), (12, "potentially_unstable"),
    (13, "unstable"), (18, "unstable"),
])
def test_bands(total, category):
    assert sins_category(total) == category


@pytest.mark.parametrize("total", [-1, 19])
def test_impossible_totals(total):
    with pytest.raises(ValueError):
        sins_category(total)


def test_points_table_matches_the_published_score():
    assert POINTS["location"] == {"junctional": 3, "mobile": 2, "semi_rigid": 1, "rigid": 0}
    assert POINTS["pain"] == {"mechanical": 3, "occasional_non_mechanical": 1, "pain_free": 0}
    assert POINTS["bone_lesion"] == {"lytic": 2, "mixed": 1, "blastic": 0}
    assert POINTS["alignment"] == {"subluxation_translation": 4, "de_novo_deformity": 2, "normal": 0}
    assert POINTS["collapse"] == {"over_50": 3, "under_50": 2, "no_collapse_over_50_involved": 1, "none": 0}
    assert POINTS["posterolateral"] == {"bilateral": 3, "unilateral": 1, "none": 0}


def test_extremes():
    worst = {name: max(points, key=points.get) for name, points in POINTS.items()}
    best = {name: min(points, key=points.get) for name, points in POINTS.items()}
    assert sins_total(worst) == 18
    assert sins_total(best) == 0

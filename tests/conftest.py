"""Shared fixtures of the core tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import triage

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
PROJECT_VIGNETTES = ROOT / "tests" / "vignettes"


@pytest.fixture(scope="session")
def ruleset() -> triage.Ruleset:
    return triage.load_ruleset(RULES)


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    """A private copy of the project's rules folder, for tests that break or change rule files."""
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def _emergency_case(**presentation) -> dict:
    base = {"patient": {"cancer": {"history": "current", "primary": "lung"}},
            "presentation": {"weakness": {"present": True, "limbs": "legs"}}}
    base["presentation"].update(presentation)
    return base


@pytest.fixture
def emergency_case():
    """A builder of a plain suspected-MSCC case (lung cancer, new leg weakness)."""
    return _emergency_case


@pytest.fixture(scope="session")
def project_vignettes() -> Path:
    """The project's own vignette suite (tests/vignettes): it stands without ../shared."""
    return PROJECT_VIGNETTES

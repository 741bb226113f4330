"""Shared fixtures of the core tests, and the guard that keeps every test away from the user's data."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

import triage

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
PROJECT_VIGNETTES = ROOT / "tests" / "vignettes"


# The settings through which an app, a server or a CLI run finds the user's own stores and folders.
_PRIVATE = ("XDG_DATA_HOME", "XDG_RUNTIME_DIR", "TMPDIR", "MSCC_RECORD_PATH", "MSCC_RECORD_DSN",
            "MSCC_CDS_STORE_PATH", "MSCC_TRIAGE_RULES")


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time (empty when absent)."""
    found: dict[str, tuple[int, int]] = {}
    if folder.is_dir():
        for path in folder.rglob("*"):
            try:
                stat = path.stat()
            except OSError:
                continue
            found[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return found




@pytest.fixture(scope="session", autouse=True)
def _never_the_users_data():
    """Tests never touch the user's data (issue 23).

    For the whole run, the data, runtime and temporary folders are private ones under one temporary
    folder (subprocesses and servers inherit them), removed at the end; the user's record and CDS
    store settings are cleared. After the run, the user's own mscc-triage data and runtime folders
    must be unchanged, and the run's own temporary folder removed.
    """
    saved = {name: os.environ.get(name) for name in _PRIVATE}
    real_tmp = Path(tempfile.gettempdir())
    real_data = Path(saved["XDG_DATA_HOME"] or Path.home() / ".local" / "share") / "mscc-triage"
    real_runtime = (Path(saved["XDG_RUNTIME_DIR"]) / "mscc-triage" if saved["XDG_RUNTIME_DIR"]
                    else real_tmp / f"mscc-triage-{os.getuid()}")
    before = (_listing(real_data), _listing(real_runtime))
    base = Path(tempfile.mkdtemp(prefix="mscc-tests-"))
    base.chmod(0o755)              # the test PostgreSQL server runs as the postgres user: it must get through
    for sub in ("data", "run", "tmp"):
        (base / sub).mkdir()
        (base / sub).chmod(0o700 if sub == "data" else 0o1777 if sub == "tmp" else 0o755)
    for name in _PRIVATE:
        os.environ.pop(name, None)
    os.environ.update(XDG_DATA_HOME=str(base / "data"), XDG_RUNTIME_DIR=str(base / "run"), TMPDIR=str(base / "tmp"))
    tempfile.tempdir = str(base / "tmp")
    try:
        yield base
    finally:
        tempfile.tempdir = None
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(base, ignore_errors=True)
    assert not base.exists(), f"the tests' private folder {base} could not be removed"
    after = (_listing(real_data), _listing(real_runtime))
    assert after[0] == before[0], f"the tests changed the user's data folder {real_data}"
    assert after[1] == before[1], f"the tests changed the user's runtime folder {real_runtime}"
    # Every temporary file of the run was made under `base` (TMPDIR, inherited by every server and
    # subprocess), which is gone: nothing of the run is left in the temporary folder. (The real one is
    # not listed: another run on the same machine may be using it.)


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

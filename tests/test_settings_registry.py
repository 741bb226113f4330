"""One settings object (issue 22): every setting read once, by one loader, with one name; the README's
settings tables name exactly these; nothing outside the loader reads the environment for a setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from triage.settings import SETTINGS, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_tables_name_every_setting_and_only_them():
    rows = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| `MSCC_")]
    named = {name for row in rows for name in re.findall(r"`(MSCC_[A-Z_]+)`", row.split(" | ")[0])}
    assert named == {s.name for s in SETTINGS}


def test_no_module_reads_a_setting_from_the_environment_but_the_loader():
    offenders = []
    for path in [*ROOT.glob("triage/*.py"), *ROOT.glob("api/**/*.py")]:
        if path.name == "settings.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"os\.environ(\.get)?\s*[\[(]\s*[\"']MSCC_", line) or "getenv(\"MSCC_" in line:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_defaults_and_a_bad_value_named():
    settings = load_settings({})
    assert (settings.max_body_bytes, settings.request_read_timeout, settings.cds_jwt_max_lifetime_s) == (65536, 10.0, 300)
    assert load_settings({"MSCC_MAX_BODY_BYTES": "2048", "MSCC_CDS_ALLOW_UNAUTHENTICATED": "1"}).max_body_bytes == 2048
    with pytest.raises(SettingsError, match="MSCC_RECORD_RETENTION_DAYS='a month': must be a whole number"):
        load_settings({"MSCC_RECORD_RETENTION_DAYS": "a month"})
    assert load_settings({"MSCC_PORT": ""}).port == 8000      # empty is not set

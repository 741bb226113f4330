"""A rule's version goes up when its meaning changes (docs/extending.md, "Versions")."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("rule_versions", ROOT / "scripts" / "rule_versions.py")
assert _spec and _spec.loader
rule_versions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rule_versions)


def test_every_rule_s_meaning_is_recorded_with_its_version():
    recorded = json.loads((ROOT / "tests" / "rule_versions.json").read_text())
    assert rule_versions.problems(recorded, rule_versions.fingerprints()) == []


def test_a_changed_meaning_without_a_new_version_is_named(rules_copy: Path):
    path = rules_copy / "mscc.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    rule = next(r for r in data["rules"] if r["id"] == "mscc.suspected")
    rule["urgency"] = "urgent"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    recorded = json.loads((ROOT / "tests" / "rule_versions.json").read_text())
    found = rule_versions.problems(recorded, rule_versions.fingerprints(rules_copy))
    version = recorded["mscc.suspected"]["version"]
    assert found == [f"mscc.suspected: its meaning changed but its version is still {version}: bump it"]
    rule["title"] = "Reworded"      # wording alone needs no new version
    rule.pop("urgency")
    original = yaml.safe_load((ROOT / "rules" / "mscc.yaml").read_text(encoding="utf-8"))
    rule["urgency"] = next(r for r in original["rules"] if r["id"] == "mscc.suspected")["urgency"]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    assert rule_versions.problems(recorded, rule_versions.fingerprints(rules_copy)) == []

"""The fingerprint of each rule's meaning, to check that a rule's version goes up when its meaning changes.

    python scripts/rule_versions.py            # compare with tests/rule_versions.json; exit 1 on a change
    python scripts/rule_versions.py --write    # record the current rules (after bumping the versions)

A rule's meaning is everything in its entry but its version, title, rationale and source (wording
changes need no new version), with the scan words of the vocabulary's ``scans`` table written out. tests/test_rule_versions.py runs the comparison.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from triage._ruleset import expanded_rule_entries

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
RECORD = ROOT / "tests" / "rule_versions.json"
WORDING = ("version", "title", "rationale", "source")


def fingerprints(rules: Path = RULES) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for _file, entry in expanded_rule_entries(rules):   # scan words written out: a rule means its expansion
        meaning = {k: v for k, v in entry.items() if k not in WORDING}
        digest = hashlib.sha256(json.dumps(meaning, sort_keys=True).encode()).hexdigest()[:16]
        found[entry["id"]] = {"version": str(entry["version"]), "meaning": digest}
    return found


def problems(recorded: dict[str, dict[str, str]], now: dict[str, dict[str, str]]) -> list[str]:
    out = []
    for rule_id, current in now.items():
        before = recorded.get(rule_id)
        if before is None:
            out.append(f"{rule_id}: new rule, not yet recorded (run with --write)")
        elif before["meaning"] != current["meaning"] and before["version"] == current["version"]:
            out.append(f"{rule_id}: its meaning changed but its version is still {current['version']}: bump it")
        elif before != current:
            out.append(f"{rule_id}: version {before['version']} -> {current['version']}, not yet recorded (run with --write)")
    out += [f"{rule_id}: removed, still recorded (run with --write)" for rule_id in recorded if rule_id not in now]
    return out


def main() -> int:
    now = fingerprints()
    if "--write" in sys.argv[1:]:
        recorded = json.loads(RECORD.read_text()) if RECORD.exists() else {}
        unbumped = [p for p in problems(recorded, now) if "bump it" in p]
        if unbumped:
            print("\n".join(unbumped), file=sys.stderr)
            return 1
        RECORD.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(now)} rules in {RECORD.relative_to(ROOT)}")
        return 0
    found = problems(json.loads(RECORD.read_text()), now)
    print("\n".join(found) if found else "ok")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())

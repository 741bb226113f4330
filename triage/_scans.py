"""The scan, named once: the table of spinal scans in ``vocabulary.yaml`` and the rule words that use it.

Every rule that asks for imaging asks for *one* scan of a reach and a timing ("whole spine within
24 hours"); which action that is (an MRI, or a CT when MRI is contraindicated) and what holds it
back (a current MRI) is the same everywhere, so it is written once, in the vocabulary's ``scans``
section::

    scans:
      hold: {unless: COND, reason: TEXT, release: TEXT}   # holds every scan a rule asks for
      routes:                                             # route id -> its word in a headline, its order
        mri: {word: MRI, order: "MRI of the {reach}"}
        ct: {word: CT, order: "CT of the {reach} (MRI contraindicated)"}
      entries:                                            # one entry per scan
        - {id: whole_spine_within_4h, reach: whole spine, words: "whole-spine {route} within 4 hours",
           mri: ACTION_ID, ct: ACTION_ID}

The order of a scan on a route (what a draft order in an EHR names: "CT of the whole spine (MRI
contraindicated)") is the route's ``order`` with the scan's ``reach``; its French words (the headline's
and the order's) are in ``labels.fr.yaml``'s ``scans`` section, by route and by scan, so a new route or
scan is written in these two tables and nowhere in code.

and a rule names a scan by its id:

- among its actions, ``{scan: ID}`` (with an optional ``when``): the scan's first route's action
  (the MRI), held back by the table's ``hold``; ``hold: false`` only where the rule's own condition
  already excludes what the hold tests (a hold that can never show is refused by the suite);
- as a headline variant, ``{text: "... {scan} ...", scan: ID}``: one variant per route, in the
  table's order, each shown when that route's action is among the result's actions, with
  ``{scan}`` replaced by the scan's words for that route ("whole-spine CT within 4 hours");
- in a condition, ``{scan: ID}`` (that scan's first-route action is among the actions so far) or
  ``{scan: any}`` (any scan's first-route action is);
- under ``removes_actions``, ``{scan: ID}`` (the scan's first-route action);
- ``replaces: {scans: ROUTE}``: every scan's first-route action by its action of that route.

These words are expanded into the plain rule language before a rule is checked (and before its
fingerprint is taken for the version check), so a rule written with them means exactly what the
same rule written out in full means. A timing, a reach or a route is changed in the table, once.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ._errors import RulesetError
from ._hints import did_you_mean

ANY = "any"
CONDITION_KEYS_WITH_CHILDREN = ("all", "any")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScanHold(_Strict):
    unless: Any
    reason: str = Field(min_length=1, max_length=160)
    release: Optional[str] = Field(None, min_length=1, max_length=160)


class Route(_Strict):
    """A route: its word in a headline ("CT") and what its draft order says ("CT of the {reach} ...")."""

    word: str = Field(min_length=1, max_length=40)
    order: str = Field(min_length=1, max_length=160)

    @model_validator(mode="after")
    def _reach(self) -> "Route":
        if "{reach}" not in self.order:
            raise ValueError("a route's order must say where the scan's reach goes ('{reach}')")
        return self


class Scan(BaseModel):
    """One scan: its id, its reach, its words in a headline, and its action on each route (``extra`` keys)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    reach: str = Field(min_length=1, max_length=80)    # what is scanned, in an order: "whole spine"
    words: str = Field(min_length=1)
    unknowns: bool = False   # the unknowns look for this scan (every route): result-format 2.2, would_add_actions


class ScanTable(_Strict):
    hold: ScanHold
    routes: dict[str, Route] = Field(min_length=1)
    entries: list[Scan] = Field(min_length=1)

    @model_validator(mode="after")
    def _complete(self) -> "ScanTable":
        seen: set[str] = set()
        for scan in self.entries:
            if scan.id == ANY:
                raise ValueError(f"a scan cannot be called '{ANY}' (`scan: {ANY}` means any scan)")
            if scan.id in seen:
                raise ValueError(f"scan '{scan.id}' is listed twice")
            seen.add(scan.id)
            extra = dict(scan.model_extra or {})
            missing = [r for r in self.routes if not isinstance(extra.get(r), str)]
            if missing:
                raise ValueError(f"scan '{scan.id}' names no action for the route(s) {', '.join(missing)}")
            unknown = [k for k in extra if k not in self.routes]
            if unknown:
                raise ValueError(f"scan '{scan.id}': '{unknown[0]}' is not a route (routes: {', '.join(self.routes)})")
            if "{route}" not in scan.words:
                raise ValueError(f"scan '{scan.id}': its words must say where the route goes ('{{route}}')")
        return self

    @property
    def first_route(self) -> str:
        return next(iter(self.routes))

    def action(self, scan_id: str, route: Optional[str] = None) -> str:
        return str((self.by_id()[scan_id].model_extra or {})[route or self.first_route])

    def by_id(self) -> dict[str, Scan]:
        return {s.id: s for s in self.entries}

    def actions(self) -> set[str]:
        return {str(a) for s in self.entries for a in (s.model_extra or {}).values()}

    def orders(self) -> dict[str, str]:
        """Every scan action -> what its draft order names ("MRI of the whole spine")."""
        return {self.action(s.id, r): route.order.replace("{reach}", s.reach)
                for s in self.entries for r, route in self.routes.items()}

    def unknowns_actions(self) -> set[str]:
        """Every route's action of the scans marked ``unknowns: true``."""
        return {str(a) for s in self.entries if s.unknowns for a in (s.model_extra or {}).values()}


def load_scan_table(raw: Any, file: str) -> Optional[ScanTable]:
    """The vocabulary's ``scans`` section, checked (None when the ruleset has none)."""
    if raw is None:
        return None
    try:
        return ScanTable.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RulesetError(file, f"scans{'.' + where if where else ''}: {first['msg']}") from None


class _Expander:
    def __init__(self, table: Optional[ScanTable], file: str, rule_id: Optional[str]) -> None:
        self.table, self.file, self.rule_id = table, file, rule_id

    def fail(self, where: str, reason: str, hint: Optional[str] = None) -> RulesetError:
        return RulesetError(self.file, f"{where}: {reason}", self.rule_id, hint)

    def scan_id(self, value: Any, where: str, allow_any: bool = False) -> str:
        if self.table is None:
            raise self.fail(where, "`scan` needs the vocabulary's `scans` table, and this ruleset has none")
        known = list(self.table.by_id())
        if not isinstance(value, str) or (value not in known and not (allow_any and value == ANY)):
            raise self.fail(where, f"'{value}' is not a scan of the vocabulary's `scans` table",
                            did_you_mean(str(value), known + ([ANY] if allow_any else [])))
        return value

    def condition(self, cond: Any, where: str) -> Any:
        if not isinstance(cond, dict):
            return cond
        if "scan" in cond:
            if len(cond) != 1:
                raise self.fail(where, "a `scan` condition stands alone ({scan: ID} or {scan: any})")
            scan_id = self.scan_id(cond["scan"], where, allow_any=True)
            assert self.table is not None
            if scan_id == ANY:
                return {"any": [{"action": self.table.action(s.id)} for s in self.table.entries]}
            return {"action": self.table.action(scan_id)}
        out = dict(cond)
        for key in CONDITION_KEYS_WITH_CHILDREN:
            if isinstance(out.get(key), list):
                out[key] = [self.condition(c, f"{where}.{key}[{i}]") for i, c in enumerate(out[key])]
        if "not" in out:
            out["not"] = self.condition(out["not"], f"{where}.not")
        return out

    def conditions_of(self, item: dict[str, Any], where: str) -> dict[str, Any]:
        for key in ("when", "unless"):
            if key in item:
                item[key] = self.condition(item[key], f"{where}.{key}")
        return item

    def action(self, item: Any, where: str) -> Any:
        if not isinstance(item, dict) or "scan" not in item:
            return self.conditions_of(dict(item), where) if isinstance(item, dict) else item
        extra = sorted(set(item) - {"scan", "when", "hold"})
        if extra:
            raise self.fail(where, f"a scan takes only `when` (and `hold: false`), not `{extra[0]}`: what holds a "
                                   "scan back, and why, is the `scans` table's `hold`")
        if "hold" in item and item["hold"] is not False:
            raise self.fail(f"{where}.hold", "only `hold: false` may be written (the table's hold is the default)")
        scan_id = self.scan_id(item["scan"], f"{where}.scan")
        assert self.table is not None
        hold = self.table.hold
        out: dict[str, Any] = {"id": self.table.action(scan_id)}
        if "when" in item:
            out["when"] = self.condition(item["when"], f"{where}.when")
        if item.get("hold") is False:   # the rule's own condition already excludes what the hold tests
            return out
        out["unless"] = copy.deepcopy(hold.unless)
        out["reason"] = hold.reason
        if hold.release is not None:
            out["release"] = hold.release
        return out

    def headline(self, item: Any, where: str) -> list[Any]:
        if not isinstance(item, dict):
            return [item]
        item = self.conditions_of(dict(item), where)
        if "scan" not in item:
            return [item]
        scan_id = self.scan_id(item["scan"], f"{where}.scan")
        assert self.table is not None
        text = item.get("text")
        if not isinstance(text, str) or "{scan}" not in text:
            raise self.fail(where, "a headline with `scan` says where the scan's words go with '{scan}'")
        scan = self.table.by_id()[scan_id]
        variants = []
        for route, spec in self.table.routes.items():
            variant = {k: copy.deepcopy(v) for k, v in item.items() if k != "scan"}
            variant["text"] = text.replace("{scan}", scan.words.replace("{route}", spec.word))
            variant["shows"] = [*item.get("shows", []), self.table.action(scan_id, route)]
            variants.append(variant)
        return variants

    def rule(self, entry: dict[str, Any]) -> dict[str, Any]:
        out = dict(entry)
        if "when" in out:
            out["when"] = self.condition(out["when"], "when")
        if isinstance(out.get("gates"), list):
            out["gates"] = [self.conditions_of(dict(g), f"gates[{i}]") if isinstance(g, dict) else g
                            for i, g in enumerate(out["gates"])]
        if isinstance(out.get("actions"), list):
            out["actions"] = [self.action(a, f"actions[{i}]") for i, a in enumerate(out["actions"])]
        for key in ("flags", "urgency"):
            if isinstance(out.get(key), list):
                out[key] = [self.conditions_of(dict(x), f"{key}[{i}]") if isinstance(x, dict) else x
                            for i, x in enumerate(out[key])]
        if isinstance(out.get("headline"), list):
            out["headline"] = [v for i, h in enumerate(out["headline"]) for v in self.headline(h, f"headline[{i}]")]
        if isinstance(out.get("removes_actions"), list):
            removes = []
            for i, item in enumerate(out["removes_actions"]):
                if isinstance(item, dict) and set(item) == {"scan"}:
                    scan_id = self.scan_id(item["scan"], f"removes_actions[{i}].scan")
                    assert self.table is not None
                    removes.append(self.table.action(scan_id))
                else:
                    removes.append(item)
            out["removes_actions"] = removes
        replaces = out.get("replaces")
        if isinstance(replaces, dict) and "scans" in replaces:
            if len(replaces) != 1:
                raise self.fail("replaces", "`scans: ROUTE` replaces every scan; it stands alone")
            route = replaces["scans"]
            if self.table is None:
                raise self.fail("replaces.scans", "needs the vocabulary's `scans` table, and this ruleset has none")
            if route not in self.table.routes or route == self.table.first_route:
                others = [r for r in self.table.routes if r != self.table.first_route]
                raise self.fail("replaces.scans", f"'{route}' is not a route a scan can be replaced by",
                                did_you_mean(str(route), others))
            out["replaces"] = {self.table.action(s.id): self.table.action(s.id, route) for s in self.table.entries}
        return out


def expand_rule(entry: Any, table: Optional[ScanTable], file: str) -> Any:
    """A rule file's entry with every scan word replaced by the plain rule language it stands for."""
    if not isinstance(entry, dict):
        return entry
    rule_id = entry.get("id") if isinstance(entry.get("id"), str) else None
    return _Expander(table, file, rule_id).rule(entry)

"""The engine's whole result (action ids, flag ids, urgency, unknowns) against a second, independent
reading of clinical-rules 2.2 (tests/action_oracle.py), on random valid cases of every density, on
the urgency oracle's threshold generator, on an extended threshold generator (the fields that one
never sets: bone health, life expectancy, metastasis count, steroids, the case as sent for M33), and
on every valid vignette of the project's suite and of the public one when it is beside the repository
(compared with the engine and with the vignette's own expectations)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Optional

import pytest
from action_oracle import CRITICAL, RANK, read, unknowns
from test_urgency_oracle import _maybe, _tri, boundary_case

import triage
from triage._case import normalised_dict
from triage._random_cases import random_valid_cases
from triage._vignettes import load_suite

ROOT = Path(__file__).resolve().parents[1]
OWN = ROOT / "tests" / "vignettes"
PUBLIC = ROOT.parent / "shared" / "vignettes"   # beside the repository in CI (.ci/run)


def _renormalise(case: dict[str, Any]) -> Optional[dict[str, Any]]:
    try:
        return normalised_dict(triage.validate_case(case))
    except triage.CaseValidationError:
        return None


def extended_case(rng: random.Random) -> dict[str, Any]:
    """The threshold generator, plus every field it leaves out, drawn at its thresholds."""
    case = boundary_case(rng)
    t = lambda p=0.4: _tri(rng, p)   # noqa: E731
    m = lambda values, p=0.5: _maybe(rng, values, p)   # noqa: E731
    pat, pres, ass, labs = case["patient"], case["presentation"], case["assessment"], case["labs"]
    pat["age_years"] = m([3, 15, 16, 49, 50, 59, 60, 61, 80], 0.6)
    pat["cancer"].update(spinal_metastases=t(0.2), metastasis_count=m([0, 1, 5, 6], 0.4))
    pat["cancer"]["primary"] = m(["breast", "prostate", "lung", "kidney", "thyroid", "melanoma", "colorectal", "sarcoma",
                                  "hepatocellular", "myeloma", "lymphoma", "leukaemia", "germ_cell", "other",
                                  "unknown"], 0.6)
    pat["treatments"].update(long_term_corticosteroids=t(0.3), prior_spinal_radiotherapy=t(0.3),
                             bone_modifying_agent=m(["none", "denosumab", "bisphosphonate"], 0.6),
                             checkpoint_inhibitor_start_days_ago=m([0, 40], 0.1))
    pat["comorbidities"] = {"diabetes": t(0.4)}
    pres["sphincter_disturbance"].update(altered_urinary_sensation=t(0.2), post_void_residual_ml=m([199, 200], 0.15))
    if rng.random() < 0.3:   # M33: the case as sent, gait not given with a non-ambulatory status
        pres["gait_difficulty"] = None
        pres["ambulatory_status"] = "non_ambulatory"
    ass["life_expectancy_months"] = m([0, 0.5, 0.99, 1, 2.9, 3, 12], 0.5)
    if rng.random() < 0.2:
        ass["sins"] = {"location": "junctional", "pain": rng.choice(["mechanical", "pain_free"]),
                       "bone_lesion": "lytic", "alignment": rng.choice(["normal", "subluxation_translation"]),
                       "collapse": rng.choice(["none", "over_50"]), "posterolateral": rng.choice(["none", "bilateral"])}
    labs.update(vitamin_d_nmol_l=m([10, 49.9, 50, 80], 0.5), creatinine_clearance_ml_min=m([10, 29.9, 30, 60, 60.1, 90], 0.5))
    labs["corrected_calcium_mmol_l"] = m([1.5, 1.89, 1.9, 2.19, 2.2, 2.6, 2.61, 2.89, 2.9, 2.99, 3.0, 3.49, 3.5], 0.6)
    pres["complete_paraplegia_hours"] = m([0, 1, 23, 24, 48, 49], 0.2)
    return case


# clinical-rules 2.2, Vocabulary: the vocabulary order of the lists above (main list, then 2, 2.1, 2.2)
SPEC_ORDER = ("cauda_equina_red_flags", "rapidly_progressive_deficit", "sins_unstable", "significant_hypercalcaemia",
              "severe_hypocalcaemia", "tetraparesis", "mri_whole_spine_within_24h", "mri_within_4h_cauda_equina",
              "mri_whole_spine_within_4h", "ct_whole_spine_within_4h", "ct_whole_spine_within_24h",
              "ct_lumbosacral_within_4h")


def _unknowns_of(result: triage.Result) -> dict[str, tuple[str, set[str], set[str]]]:
    for u in result.unknowns:   # sets compared below; the order checked here, against the spec's
        for ids in (u.would_add_flags, u.would_add_actions):
            assert list(ids) == sorted(ids, key=SPEC_ORDER.index), (u.field, ids)
    return {u.field: (u.could_raise_to, set(u.would_add_flags), set(u.would_add_actions)) for u in result.unknowns}


def _compare(ruleset: triage.Ruleset, cases: Iterable[Any], want_valid: int, unknowns_every: int = 0) -> Counter[str]:
    """Compare every case's urgency, actions and flags; the unknowns of every ``unknowns_every``-th (0: none)."""
    seen: Counter[str] = Counter()
    problems: list[str] = []
    for case in cases:
        normalised = _renormalise(case)
        if normalised is None:
            continue
        spec = read(normalised, case)
        result = ruleset.evaluate(case)
        seen[result.urgency] += 1
        got_actions, got_flags = set(result.action_ids()), set(result.flag_ids())
        where = f"(spec rules {spec.fired}): {json.dumps(case)}"
        if result.urgency != spec.urgency:
            problems.append(f"urgency: engine {result.urgency}, spec {spec.urgency} {where}")
        if got_actions != spec.actions:
            problems.append(f"actions: engine only {sorted(got_actions - spec.actions)}, "
                            f"spec only {sorted(spec.actions - got_actions)} {where}")
        if got_flags != spec.flags:
            problems.append(f"flags: engine only {sorted(got_flags - spec.flags)}, "
                            f"spec only {sorted(spec.flags - got_flags)} {where}")
        critical = {f.id for f in result.flags if f.severity == "critical"}
        if critical != spec.flags & set(CRITICAL):
            problems.append(f"critical severity: engine {sorted(critical)} {where}")
        if unknowns_every and sum(seen.values()) % unknowns_every == 0:
            mine, theirs = unknowns(normalised, _renormalise, spec), _unknowns_of(result)
            if mine != theirs:
                diff = {k: (mine.get(k), theirs.get(k)) for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k)}
                problems.append(f"unknowns (spec, engine): {diff} {where}")
        if sum(seen.values()) == want_valid:
            break
    assert not problems, f"{len(problems)} disagreements, first:\n" + "\n".join(problems[:5])
    assert sum(seen.values()) == want_valid
    return seen


@pytest.mark.parametrize("density", [0.1, 0.3, 0.5, 0.8, 0.95])
def test_whole_result_agrees_on_random_cases(ruleset, density):
    _compare(ruleset, random_valid_cases(seed=2202, n=200, density=density), want_valid=200, unknowns_every=4)


def test_whole_result_agrees_around_every_threshold(ruleset):
    rng = random.Random(22)
    seen = _compare(ruleset, iter(lambda: boundary_case(rng), None), want_valid=400, unknowns_every=8)
    assert min(seen[level] for level in RANK) >= 5, seen


def test_whole_result_agrees_on_the_extended_thresholds(ruleset):
    rng = random.Random(23)
    seen = _compare(ruleset, iter(lambda: extended_case(rng), None), want_valid=600, unknowns_every=5)
    assert min(seen[level] for level in RANK) >= 5, seen


UNBOUNDED = ("patient.cancer.metastasis_count", "patient.treatments.checkpoint_inhibitor_start_days_ago",
             "presentation.weakness.onset_hours", "presentation.sphincter_disturbance.post_void_residual_ml",
             "presentation.non_ambulatory_hours", "presentation.complete_paraplegia_hours",
             "assessment.life_expectancy_months")


def _huge(rng: random.Random, case: dict[str, Any]) -> dict[str, Any]:
    """The case with some counts and durations (bounded from below only) set far past the engine's limit."""
    from triage import set_path

    case = json.loads(json.dumps(case))
    for path in UNBOUNDED:
        if rng.random() < 0.2:
            whole = path.startswith("patient.")
            set_path(case, path, rng.choice([10**9, 10**12, 10**400] if whole else [1e9, 1.5e12, 1e300, 1.7e308]))
    return case


def test_whole_result_agrees_with_numbers_past_the_engine_limit(ruleset):
    """Counts and durations have no upper bound (case-format 2.2); past 10^9 they reach durable as 10^9.
    The independent reading compares the numbers themselves: the results must not differ."""
    rng = random.Random(2204)
    seen = _compare(ruleset, (_huge(rng, c) for c in random_valid_cases(seed=2204, n=900, density=0.05)),
                    want_valid=300, unknowns_every=3)
    assert min(seen[level] for level in RANK) >= 5, seen


def _valid_vignettes() -> list[tuple[str, Any]]:
    folders = [str(OWN)] + ([str(PUBLIC)] if PUBLIC.is_dir() else [])
    return [(f"{Path(path).stem}:{v.id}", v) for path, v in load_suite(folders) if not v.expect.error]


def test_whole_result_agrees_on_every_vignette(ruleset):
    vignettes = _valid_vignettes()
    assert len(vignettes) > 300
    problems = []
    for name, vignette in vignettes:
        case, expect = vignette.case, vignette.expect
        normalised = _renormalise(case)
        assert normalised is not None, f"{name}: a valid vignette is rejected"
        spec = read(normalised, case)
        spec_unknowns = unknowns(normalised, _renormalise, spec)
        result = ruleset.evaluate(case)
        if (result.urgency, set(result.action_ids()), set(result.flag_ids()), _unknowns_of(result)) != \
                (spec.urgency, spec.actions, spec.flags, spec_unknowns):
            problems.append(f"{name}: engine and spec reading differ")
        # the vignette's own expectations, against the spec reading
        if expect.urgency != spec.urgency:
            problems.append(f"{name}: vignette expects {expect.urgency}, spec reading {spec.urgency}")
        for key, have in (("actions", spec.actions), ("flags", spec.flags), ("unknowns", set(spec_unknowns))):
            for item in getattr(expect, f"{key}_include"):
                if item not in have:
                    problems.append(f"{name}: vignette expects {key[:-1]} {item}, spec reading lacks it")
            for item in getattr(expect, f"{key}_exclude"):
                if item in have:
                    problems.append(f"{name}: vignette excludes {key[:-1]} {item}, spec reading has it")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:20])


def test_the_reading_is_not_trivial():
    """The example of the spec's Unknowns section: the empty case lists six, each to emergency."""
    empty = _renormalise({})
    got = unknowns(empty, _renormalise)
    assert set(got) == {"presentation.focal_vertebral_pain.present", "presentation.weakness.present",
                        "presentation.paraesthesia.present", "presentation.sphincter_disturbance.present",
                        "presentation.sciatica.present", "presentation.gait_difficulty"}
    assert {level for level, _, _ in got.values()} == {"emergency"}
    assert got["presentation.weakness.present"][1] == {"cauda_equina_red_flags", "rapidly_progressive_deficit"}
    assert got["presentation.gait_difficulty"][2] == {"mri_whole_spine_within_24h"}


def _held(spec: Any) -> set[str]:
    """The spec rules whose condition held: those that asked for an action or gave a flag (before any
    withdrawal), raised the urgency, or are recorded as firing."""
    return {r for asked in list(spec.asked.values()) + list(spec.flag_because.values()) for r in asked} \
        | {r for r, _ in spec.raised} | set(spec.fired)


def test_because_and_fired_rules_agree(ruleset):
    """Each action's and flag's ``because`` and ``fired_rules`` (result-format 2.2), up to the project's
    own rule names: the map from the engine's names to the spec's (M1, S1, B8...) is inferred from the
    ``because`` lists and must be a function; the project's withdrawal rules (those that never give an
    action or a flag) are the only fired rules without a spec counterpart."""
    rng = random.Random(25)
    pairs = []
    sparse = list(random_valid_cases(seed=2205, n=100, density=0.1))
    while len(pairs) < 400:
        case = sparse.pop() if sparse else extended_case(rng)
        normalised = _renormalise(case)
        if normalised is not None:
            pairs.append((read(normalised, case), ruleset.evaluate(case), case))
    candidates: dict[str, set[str]] = {}
    for spec, result, _ in pairs:
        for item, asked in [(a, spec.because[a.id]) for a in result.actions] + \
                           [(f, spec.flag_because[f.id]) for f in result.flags]:
            for name in item.because:
                candidates[name] = candidates.get(name, set(asked)) & set(asked)
    for spec, result, _ in pairs:   # a rule fired maps to a rule that held; one not fired, to none that held
        fired_ids = {rule.id for rule in result.fired_rules}
        for name in candidates:
            if name in fired_ids:
                candidates[name] &= _held(spec)
            else:
                candidates[name] -= _held(spec)
    assert all(len(c) == 1 for c in candidates.values()), {k: c for k, c in candidates.items() if len(c) != 1}
    to_spec = {name: next(iter(c)) for name, c in candidates.items()}
    assert len(set(to_spec.values())) >= 45, sorted(to_spec.values())   # most spec rules are named
    problems = []
    for spec, result, case in pairs:
        for a in result.actions:
            if {to_spec[n] for n in a.because} != set(spec.because[a.id]):
                problems.append(f"because of {a.id}: engine {a.because}, spec {spec.because[a.id]}: {json.dumps(case)}")
        for f in result.flags:
            if {to_spec[n] for n in f.because} != set(spec.flag_because[f.id]):
                problems.append(f"because of {f.id}: engine {f.because}, spec {spec.flag_because[f.id]}: {json.dumps(case)}")
        held = _held(spec)
        fired = {to_spec.get(r.id, r.id) for r in result.fired_rules}
        lacking = (held - fired) & set(to_spec.values())   # a rule the sample never saw giving anything is unnamed
        if lacking:
            problems.append(f"fired_rules lack {sorted(lacking)}: {json.dumps(case)}")
        for extra in fired - held:
            if extra in to_spec.values():
                problems.append(f"fired_rules has {extra} whose condition does not hold: {json.dumps(case)}")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:5])

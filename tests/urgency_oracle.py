"""A second, independent reading of clinical-rules 2.2 in plain Python: the urgency, the critical flags, the scans.

Written from the spec's tables ("Derived concepts", "MSCC rules", "Steroids", "Definitive treatment",
"Calcium and bone-health rules") without reading ``rules/``: every rule that sets or raises the urgency
(M1 and its urgent form, M2, M3, M4, M7, M9, M10, M19, M24, M26, M27, M31, M32, M34, H1, B8, B9), each
from its row; the six critical flags (Vocabulary) from the rows that give them; and the scans: every
MRI action a rule asks for, the withdrawals of "MRI timing" (step 4) and M37's CT route (step 6). It
reads the *normalised* case (the engine's normalisation, case-format.md), so it checks the rule files
and their compilation, not the normalisation, which has tests of its own.

``tests/test_urgency_oracle.py`` compares it with the engine on random and boundary cases: two
readings that disagree point at a rule that does not say what the spec says (or at a misreading here).
"""

from __future__ import annotations

from typing import Any

RANK = {"routine": 0, "urgent": 1, "emergency": 2}


def _true(value: Any) -> bool:
    return value is True


def urgency(n: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """The urgency the spec gives the normalised case ``n``, and the (rule, level) of each rule raising it."""
    level, raised, _, _ = reading(n)
    return level, raised


def critical_flags(n: dict[str, Any]) -> set[str]:
    """The critical flags the spec gives the normalised case ``n`` (Vocabulary: the six of severity critical)."""
    return reading(n)[2]


IMAGING = ("mri_whole_spine_within_4h", "mri_within_4h_cauda_equina", "mri_whole_spine_within_24h",
           "mri_whole_spine_within_1_week")
CT = {"mri_whole_spine_within_4h": "ct_whole_spine_within_4h", "mri_within_4h_cauda_equina": "ct_lumbosacral_within_4h",
      "mri_whole_spine_within_24h": "ct_whole_spine_within_24h",
      "mri_whole_spine_within_1_week": "ct_whole_spine_within_1_week"}


def imaging(n: dict[str, Any]) -> set[str]:
    """The scans the spec gives the normalised case ``n`` (the MRI actions after the withdrawals, and
    their CT replacements when the MRI is contraindicated: M37)."""
    return reading(n)[3]


def reading(n: dict[str, Any]) -> tuple[str, list[tuple[str, str]], set[str], set[str]]:
    """(urgency, the rules raising it, critical flags, scans) of the normalised case ``n``."""
    patient, pres, assess, labs = n["patient"], n["presentation"], n["assessment"], n["labs"]
    history, age = patient["cancer"]["history"], patient["age_years"]
    pain_v, weak, par, sph, sci = (pres["focal_vertebral_pain"], pres["weakness"], pres["paraesthesia"],
                                   pres["sphincter_disturbance"], pres["sciatica"])
    weakness = _true(weak["present"])
    limbs = weak["limbs"] if weakness else None           # read only with weakness present (2.2 amendment)
    onset = weak["onset_hours"] if weakness else None
    region = pain_v["region"]
    walk_lost, paraplegia = pres["non_ambulatory_hours"], pres["complete_paraplegia_hours"]

    cancer_context = history in ("current", "past", "suspected", "unknown")
    pain = _true(pain_v["present"]) or _true(sci["present"])
    cord_signs = any(map(_true, (weak["present"], sph["present"], par["sensory_level"], par["saddle_anaesthesia"],
                                 par["bilateral_legs"], pres["gait_difficulty"])))
    low_back_or_leg = _true(sci["present"]) or (
        _true(pain_v["present"]) and region in ("lumbar", "sacral", "thoracolumbar", None))
    neuro_deficit = any(map(_true, (weak["present"], par["present"], sph["present"], sci["present"],
                                    pres["gait_difficulty"], pain_v["band_like"]))) \
        or (_true(pres["sexual_dysfunction"]) and low_back_or_leg)
    cauda_equina = any(map(_true, (par["saddle_anaesthesia"], par["bilateral_legs"], sph["urinary_retention"],
                                   sph["urinary_incontinence"], sph["faecal_incontinence"], sci["bilateral"]))) \
        or (weakness and _true(weak["bilateral"]) and limbs in ("legs", None)) \
        or ((_true(sph["present"]) or _true(pres["sexual_dysfunction"])) and low_back_or_leg)
    tetraparesis = weakness and _true(weak["bilateral"]) and limbs == "arms_and_legs"
    rapid = (weakness and (_true(weak["progressive"]) or (onset is not None and onset < 48)
                           or pres["ambulatory_status"] == "non_ambulatory")) \
        or (walk_lost is not None and 0 < walk_lost < 48)
    pain_feature = any(map(_true, (pain_v["progressive"], pain_v["severe_unremitting"], pain_v["nocturnal"],
                                   pain_v["worse_on_straining"], pain_v["localised_tenderness"])))
    result_recorded = assess["mri_compression"] is not None or assess["escc_grade"] is not None
    mri_done = _true(assess["mri_performed"]) and result_recorded and not _true(assess["new_findings_since_mri"])
    epidural = assess["escc_grade"] in ("1a", "1b", "1c")
    excluded = mri_done and assess["mri_compression"] is False and not epidural
    confirmed = _true(assess["mri_compression"])
    isolated = _true(par["present"]) and all(value is False for value in (
        par["sensory_level"], par["saddle_anaesthesia"], par["bilateral_legs"], weak["present"], sph["present"],
        sci["present"], pres["gait_difficulty"], pain_v["present"]))
    platelets = labs["platelets_10e9_l"]
    haematoma_risk = _true(patient["treatments"]["anticoagulant"]) or _true(pres["recent_neuraxial_procedure"]) \
        or (platelets is not None and platelets < 50)
    sudden = (onset is not None and onset < 24) or (walk_lost is not None and 0 < walk_lost < 24) \
        or (paraplegia is not None and 0 < paraplegia < 24)
    high_region = region in ("cervical", "thoracic", "thoracolumbar")

    upper_level = _true(par["sensory_level"]) or (weakness and limbs in ("arms", "arms_and_legs")) \
        or region in ("cervical", "thoracic")
    lower_level = low_back_or_leg or _true(par["saddle_anaesthesia"]) or _true(sph["present"])
    raised: list[tuple[str, str]] = []
    flags: set[str] = set()
    scans: set[str] = set()
    scan = (lambda action: None) if mri_done else scans.add   # no MRI action is given when mri_done
    m1 = cancer_context and neuro_deficit and not excluded
    urgent_form = m1 and isolated and not confirmed
    if m1:
        raised.append(("M1", "urgent" if urgent_form else "emergency"))
        if rapid and not urgent_form:
            flags.add("rapidly_progressive_deficit")
        scan("mri_whole_spine_within_24h")
    m2_lumbosacral = False
    if cauda_equina and not excluded:
        raised.append(("M2", "emergency"))
        flags.add("cauda_equina_red_flags")
        if cancer_context or upper_level:
            scan("mri_whole_spine_within_4h")
        else:
            scan("mri_within_4h_cauda_equina")
            m2_lumbosacral = not mri_done
    m3 = history == "none" and (cord_signs or (confirmed and neuro_deficit)) and not excluded
    if m3:
        raised.append(("M3", "emergency"))
        if rapid:
            flags.add("rapidly_progressive_deficit")
        if not (m2_lumbosacral and lower_level):
            scan("mri_whole_spine_within_24h")
    if cancer_context and _true(pain_v["present"]) and not neuro_deficit and not excluded:
        raised.append(("M4", "urgent"))
        scan("mri_whole_spine_within_1_week")
    if excluded and neuro_deficit:
        raised.append(("M7", "emergency" if rapid else "urgent"))
        if rapid:
            flags.add("rapidly_progressive_deficit")
    if confirmed and not neuro_deficit:
        raised.append(("M19", "urgent"))
    if history == "none" and _true(pain_v["present"]) and ((high_region and (age is None or age >= 50)) or pain_feature):
        scan("mri_whole_spine_within_1_week")   # M24 fires; it raises the urgency only without a clear MRI
        if not excluded:
            raised.append(("M24", "urgent"))
    if _true(assess["vertebral_fracture"]) and not mri_done:
        raised.append(("M26", "urgent"))
        scan("mri_whole_spine_within_24h")
    if _true(assess["vertebral_fracture"]) and history == "none":
        raised.append(("M27", "urgent"))
    if history == "none" and _true(pain_v["present"]) and (high_region or pain_feature) and neuro_deficit \
            and not m3 and not excluded:
        raised.append(("M31", "urgent"))
        scan("mri_whole_spine_within_24h")
    if _true(pres["infection_suspected"]) and pain and not m1 and not m3 and not excluded:
        raised.append(("M32", "emergency"))
        scan("mri_whole_spine_within_24h")
    if tetraparesis and not excluded:
        raised.append(("M34", "emergency"))
        flags.add("tetraparesis")
        scan("mri_whole_spine_within_4h")
    if haematoma_risk and cord_signs and not excluded and (_true(pres["recent_neuraxial_procedure"]) or sudden):
        raised.append(("H1", "emergency"))
        scan("mri_whole_spine_within_4h")
    sins = assess["sins"]["total"]
    if sins is not None and sins >= 7:
        raised.append(("M9", "urgent"))
        if sins >= 13:
            flags.add("sins_unstable")
            scan("mri_whole_spine_within_24h")
    if assess["escc_grade"] in ("2", "3"):
        raised.append(("M10", "urgent"))
    calcium = labs["corrected_calcium_mmol_l"]
    if calcium is not None:
        hyper, hypo = _true(pres["hypercalcaemia_symptoms"]), _true(pres["hypocalcaemia_symptoms"])
        if calcium >= 3.0 or (calcium >= 2.90 and hyper):
            raised.append(("B8", "emergency" if calcium >= 3.5 or (calcium >= 3.0 and hyper) else "urgent"))
            flags.add("significant_hypercalcaemia")
        if calcium < 2.20 and (calcium < 1.90 or hypo):
            raised.append(("B9", "emergency"))
            flags.add("severe_hypocalcaemia")
    level = max((lvl for _, lvl in raised), key=RANK.__getitem__, default="routine")
    # one scan, at the earliest time asked (step 4), then the CT route (step 6)
    if "mri_whole_spine_within_4h" in scans:
        scans -= {"mri_whole_spine_within_24h", "mri_whole_spine_within_1_week", "mri_within_4h_cauda_equina"}
    if "mri_whole_spine_within_24h" in scans:
        scans.discard("mri_whole_spine_within_1_week")
    if _true(assess["mri_contraindicated"]):
        scans = {CT[action] for action in scans}
    return level, raised, flags, scans

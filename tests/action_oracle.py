"""A second, independent reading of clinical-rules 2.2 in plain Python: the WHOLE result's ids.

Written from the spec text only (clinical-rules.md: "Derived concepts", "MSCC rules", "MRI timing",
"Surgical opinion", "Order of evaluation", "Steroids", "Definitive treatment", "Calcium and
bone-health rules", "Unknowns (what-if)", "Vocabulary"; case-format.md; result-format.md), without
reading ``rules/``. For a *normalised* case (the engine's normalisation: it has tests of its own) it
gives:

- ``actions``: the set of action ids of the result (after every withdrawal, M6/M16, and M37's CT route);
- ``flags``: the set of flag ids (every severity);
- ``unknowns``: {field: (could_raise_to, set of would_add_flags, set of would_add_actions)}.

M33 reads the case *as sent*; pass it as ``raw`` (without it, M33 is read as not firing).
``tests/test_action_oracle.py`` compares it with the engine.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

RANK = {"routine": 0, "urgent": 1, "emergency": 2}

CRITICAL = ("cauda_equina_red_flags", "rapidly_progressive_deficit", "sins_unstable", "significant_hypercalcaemia",
            "severe_hypocalcaemia", "tetraparesis")
# the imaging actions of the unknowns (1-week scans are not among them)
IMAGING_FOR_UNKNOWNS = ("mri_whole_spine_within_4h", "mri_within_4h_cauda_equina", "mri_whole_spine_within_24h",
                        "ct_whole_spine_within_4h", "ct_lumbosacral_within_4h", "ct_whole_spine_within_24h")
MRI = ("mri_whole_spine_within_4h", "mri_within_4h_cauda_equina", "mri_whole_spine_within_24h",
       "mri_whole_spine_within_1_week")
CT = {"mri_whole_spine_within_4h": "ct_whole_spine_within_4h", "mri_within_4h_cauda_equina": "ct_lumbosacral_within_4h",
      "mri_whole_spine_within_24h": "ct_whole_spine_within_24h",
      "mri_whole_spine_within_1_week": "ct_whole_spine_within_1_week"}

GROUP_SUBS = {
    "focal_vertebral_pain": ("progressive", "severe_unremitting", "nocturnal", "worse_on_straining",
                             "localised_tenderness", "mechanical", "band_like"),
    "weakness": ("bilateral", "progressive"),
    "paraesthesia": ("sensory_level", "saddle_anaesthesia", "bilateral_legs"),
    "sphincter_disturbance": ("urinary_retention", "urinary_incontinence", "faecal_incontinence",
                              "altered_urinary_sensation"),
    "sciatica": ("bilateral",),
}


def _t(value: Any) -> bool:
    return value is True


@dataclass
class Reading:
    urgency: str = "routine"
    actions: set[str] = field(default_factory=set)
    flags: set[str] = field(default_factory=set)
    fired: list[str] = field(default_factory=list)          # spec rule names that fired (for messages)
    raised: list[tuple[str, str]] = field(default_factory=list)
    because: dict[str, list[str]] = field(default_factory=dict)   # action -> spec rules that asked for it
    flag_because: dict[str, list[str]] = field(default_factory=dict)   # flag -> spec rules that gave it
    asked: dict[str, list[str]] = field(default_factory=dict)   # every action asked (before withdrawals) -> rules


def read(n: dict[str, Any], raw: Optional[dict[str, Any]] = None) -> Reading:
    """The spec's result (urgency, action ids, flag ids) of the normalised case ``n``."""
    patient, pres, assess, labs = n["patient"], n["presentation"], n["assessment"], n["labs"]
    cancer, treat = patient["cancer"], patient["treatments"]
    history, primary, age = cancer["history"], cancer["primary"], patient["age_years"]
    pain_v, weak, par, sph, sci = (pres["focal_vertebral_pain"], pres["weakness"], pres["paraesthesia"],
                                   pres["sphincter_disturbance"], pres["sciatica"])
    weakness = _t(weak["present"])
    limbs = weak["limbs"] if weakness else None
    onset = weak["onset_hours"] if weakness else None
    region = pain_v["region"]
    walk_lost, para_h = pres["non_ambulatory_hours"], pres["complete_paraplegia_hours"]
    para_pos = para_h is not None and para_h > 0
    bone_mets = _t(cancer["bone_metastases"])

    # ---- derived concepts ----
    # (as in tests/urgency_oracle.py, whose reading was read first: a spec change to a concept changes both)
    cancer_context = history in ("current", "past", "suspected", "unknown")
    pain = _t(pain_v["present"]) or _t(sci["present"])
    cord_signs = any(map(_t, (weak["present"], sph["present"], par["sensory_level"], par["saddle_anaesthesia"],
                              par["bilateral_legs"], pres["gait_difficulty"])))
    low_back_or_leg = _t(sci["present"]) or (
        _t(pain_v["present"]) and region in ("lumbar", "sacral", "thoracolumbar", None))
    neuro = any(map(_t, (weak["present"], par["present"], sph["present"], sci["present"],
                         pres["gait_difficulty"], pain_v["band_like"]))) \
        or (_t(pres["sexual_dysfunction"]) and low_back_or_leg)
    cauda = any(map(_t, (par["saddle_anaesthesia"], par["bilateral_legs"], sph["urinary_retention"],
                         sph["urinary_incontinence"], sph["faecal_incontinence"], sci["bilateral"]))) \
        or (weakness and _t(weak["bilateral"]) and limbs in ("legs", None)) \
        or ((_t(sph["present"]) or _t(pres["sexual_dysfunction"])) and low_back_or_leg)
    tetraparesis = weakness and _t(weak["bilateral"]) and limbs == "arms_and_legs"
    rapid = (weakness and (_t(weak["progressive"]) or (onset is not None and onset < 48)
                           or pres["ambulatory_status"] == "non_ambulatory")) \
        or (walk_lost is not None and 0 < walk_lost < 48)
    steroid_decision_now = rapid or cord_signs
    pain_feature = any(map(_t, (pain_v["progressive"], pain_v["severe_unremitting"], pain_v["nocturnal"],
                                pain_v["worse_on_straining"], pain_v["localised_tenderness"])))
    haem_primary = primary in ("myeloma", "lymphoma", "leukaemia")
    haem_suspected = primary in ("lymphoma", "leukaemia") and history in ("suspected", "unknown", "past")
    steroid_diagnosis_open = not haem_primary and (history == "suspected" or primary == "unknown")
    paediatric = age is not None and age < 16
    result_recorded = assess["mri_compression"] is not None or assess["escc_grade"] is not None
    mri_done = _t(assess["mri_performed"]) and result_recorded and not _t(assess["new_findings_since_mri"])
    epidural = assess["escc_grade"] in ("1a", "1b", "1c")
    excluded = mri_done and assess["mri_compression"] is False and not epidural
    confirmed = _t(assess["mri_compression"])
    isolated = _t(par["present"]) and all(v is False for v in (
        par["sensory_level"], par["saddle_anaesthesia"], par["bilateral_legs"], weak["present"], sph["present"],
        sci["present"], pres["gait_difficulty"], pain_v["present"]))
    upper_level = _t(par["sensory_level"]) or (weakness and limbs in ("arms", "arms_and_legs")) \
        or region in ("cervical", "thoracic")
    lower_level = low_back_or_leg or _t(par["saddle_anaesthesia"]) or _t(sph["present"])
    malignancy_plausible = (age is None or age >= 50) or pain_feature or upper_level \
        or _t(assess["vertebral_fracture"]) or confirmed
    platelets = labs["platelets_10e9_l"]
    haematoma_risk = _t(treat["anticoagulant"]) or _t(pres["recent_neuraxial_procedure"]) \
        or (platelets is not None and platelets < 50)
    sudden = (onset is not None and onset < 24) or (walk_lost is not None and 0 < walk_lost < 24) \
        or (para_h is not None and 0 < para_h < 24)
    radioresistant = primary in ("kidney", "melanoma", "thyroid", "colorectal", "sarcoma", "hepatocellular")
    radiosensitive = primary in ("lymphoma", "myeloma", "leukaemia", "germ_cell")
    sins = assess["sins"]["total"]
    escc = assess["escc_grade"]
    calcium = labs["corrected_calcium_mmol_l"]
    life = assess["life_expectancy_months"]
    agent = treat["bone_modifying_agent"]
    fracture = _t(assess["vertebral_fracture"])

    r = Reading()
    acts: dict[str, list[str]] = {}   # action -> rules asking

    def act(rule: str, *ids: str) -> None:
        for i in ids:
            acts.setdefault(i, []).append(rule)

    def mri(rule: str, i: str) -> None:
        if not mri_done:   # "No MRI action is given when mri_done"
            act(rule, i)

    def flag(rule: str, *ids: str) -> None:
        r.flags.update(ids)
        for i in ids:
            r.flag_because.setdefault(i, []).append(rule)

    def raise_(rule: str, level: str) -> None:
        r.raised.append((rule, level))

    def fire(rule: str) -> None:
        r.fired.append(rule)

    # ---- H1 (read first: S1 depends on it) ----
    h1 = haematoma_risk and cord_signs and not excluded and (_t(pres["recent_neuraxial_procedure"]) or sudden)

    # ---- M1 ----
    m1 = cancer_context and neuro and not excluded
    urgent_form = m1 and isolated and not confirmed
    if m1:
        fire("M1")
        raise_("M1", "urgent" if urgent_form else "emergency")
        act("M1", "contact_mscc_coordinator_within_24h" if urgent_form else "contact_mscc_coordinator_immediately")
        mri("M1", "mri_whole_spine_within_24h")
        act("M1", "urgent_spinal_surgical_opinion", "spinal_stability_assessment", "baseline_bloods")
        if confirmed and (neuro or para_pos):
            act("M1", "spinal_surgical_opinion_now")
        if history in ("current", "past", "suspected") and not urgent_form:
            act("M1", "radiotherapy_referral")
        if not urgent_form:
            act("M1", "spinal_precautions")
        if history == "suspected":
            act("M1", "urgent_tissue_diagnosis_route")
        if paediatric:
            act("M1", "contact_paediatric_oncology_now")
        if rapid and not urgent_form:
            flag("M1", "rapidly_progressive_deficit")

    # ---- M2 ----
    m2 = cauda and not excluded
    m2_cauda_mri = False
    if m2:
        fire("M2")
        raise_("M2", "emergency")
        if cancer_context or upper_level:
            mri("M2", "mri_whole_spine_within_4h")
        else:
            mri("M2", "mri_within_4h_cauda_equina")
            m2_cauda_mri = not mri_done
        act("M2", "spinal_surgical_opinion_now", "bladder_scan")
        flag("M2", "cauda_equina_red_flags")

    # ---- M3 ----
    m3 = history == "none" and (cord_signs or (confirmed and neuro)) and not excluded
    if m3:
        fire("M3")
        raise_("M3", "emergency")
        if not (m2_cauda_mri and lower_level):
            mri("M3", "mri_whole_spine_within_24h")
        act("M3", "urgent_spinal_surgical_opinion", "spinal_stability_assessment", "spinal_precautions",
            "baseline_bloods")
        if confirmed and (neuro or para_pos):
            act("M3", "spinal_surgical_opinion_now")
        if confirmed:
            act("M3", "contact_mscc_coordinator_immediately", "urgent_tissue_diagnosis_route")
        if paediatric:
            act("M3", "contact_paediatric_oncology_now")
        if not m2 or malignancy_plausible:
            act("M3", "cancer_diagnostic_workup")
            if steroid_decision_now:
                act("M3", "senior_steroid_decision_now")
            flag("M3", "no_known_cancer_consider_malignancy", "senior_review_before_steroids")
        if rapid:
            flag("M3", "rapidly_progressive_deficit")

    # ---- M4 ----
    if cancer_context and _t(pain_v["present"]) and not neuro and not excluded:
        fire("M4")
        raise_("M4", "urgent")
        act("M4", "contact_mscc_coordinator_within_24h", "safety_net_advice")
        mri("M4", "mri_whole_spine_within_1_week")

    # ---- M5 ----
    if _t(pain_v["mechanical"]) and cancer_context:
        fire("M5")
        act("M5", "spinal_stability_assessment")
        if neuro or _t(pain_v["severe_unremitting"]):
            act("M5", "spinal_precautions")
        flag("M5", "possible_spinal_instability")

    # ---- M7 ----
    if excluded and neuro:
        fire("M7")
        raise_("M7", "emergency" if rapid else "urgent")
        act("M7", "neurology_review_now" if rapid else "neurology_review")
        flag("M7", "mscc_excluded_by_mri")
        if rapid:
            flag("M7", "rapidly_progressive_deficit")

    # ---- M8 ----
    if history == "unknown" and (neuro or pain):
        fire("M8")
        flag("M8", "cancer_history_unknown")

    # ---- M19 ----
    m19 = confirmed and not neuro
    if m19:
        fire("M19")
        raise_("M19", "urgent")
        act("M19", "urgent_spinal_surgical_opinion")
        flag("M19", "radiological_compression_without_deficit")
        if cancer_context:
            act("M19", "contact_mscc_coordinator_within_24h")
        if history in ("current", "past", "suspected"):
            act("M19", "radiotherapy_referral")
        if history == "none":
            act("M19", "cancer_diagnostic_workup", "urgent_tissue_diagnosis_route")
            flag("M19", "no_known_cancer_consider_malignancy")

    if pain:   # M20
        act("M20", "analgesia")
    if _t(sph["present"]):   # M21
        act("M21", "bladder_scan")
    if paediatric:   # M22
        flag("M22", "paediatric_outside_adult_guideline")
    if _t(assess["new_findings_since_mri"]):   # M23
        flag("M23", "mri_predates_new_findings")

    # ---- M24 ----
    high_region = region in ("cervical", "thoracic", "thoracolumbar")
    if history == "none" and _t(pain_v["present"]) and ((high_region and (age is None or age >= 50)) or pain_feature):
        fire("M24")
        if not excluded:
            raise_("M24", "urgent")
        act("M24", "paediatric_assessment_within_48h" if paediatric else "cancer_diagnostic_workup")
        act("M24", "safety_net_advice")
        mri("M24", "mri_whole_spine_within_1_week")
        flag("M24", "no_known_cancer_consider_malignancy")

    # ---- M25 ----
    if excluded and _t(treat["corticosteroids"]) and not _t(treat["checkpoint_inhibitor"]):
        act("M25", "review_steroids_mscc_excluded")

    # ---- M26, M27 ----
    m26 = fracture and not mri_done
    if m26:
        fire("M26")
        raise_("M26", "urgent")
        mri("M26", "mri_whole_spine_within_24h")
        act("M26", "spinal_stability_assessment", "urgent_spinal_surgical_opinion")
    if fracture and history == "none":
        fire("M27")
        raise_("M27", "urgent")
        act("M27", "cancer_diagnostic_workup")
        flag("M27", "no_known_cancer_consider_malignancy")

    if _t(assess["mri_performed"]) and not result_recorded:   # M28
        flag("M28", "mri_result_not_recorded")

    # ---- M29 ----
    if cancer_context and (history == "unknown" or primary == "unknown") and (m1 or m19 or m26):
        act("M29", "establish_cancer_history")

    # ---- M30 ----
    if history == "none" and age is not None and age >= 60 and _t(pain_v["present"]):
        act("M30", "myeloma_screen_bloods")

    # ---- M31 ----
    if history == "none" and _t(pain_v["present"]) and (high_region or pain_feature) and neuro and not m3 \
            and not excluded:
        fire("M31")
        raise_("M31", "urgent")
        mri("M31", "mri_whole_spine_within_24h")
        flag("M31", "no_known_cancer_consider_malignancy")

    # ---- M32 ----
    if _t(pres["infection_suspected"]) and pain and not m1 and not m3 and not excluded:
        fire("M32")
        raise_("M32", "emergency")
        act("M32", "blood_cultures_and_infection_markers", "urgent_spinal_surgical_opinion")
        mri("M32", "mri_whole_spine_within_24h")
        flag("M32", "consider_spinal_infection")

    # ---- M33 (the case as sent) ----
    if raw is not None:
        rp = raw.get("presentation") or {}
        nah, cph = rp.get("non_ambulatory_hours"), rp.get("complete_paraplegia_hours")
        if rp.get("gait_difficulty") is None and rp.get("ambulatory_status") == "non_ambulatory" \
                and not (nah is not None and nah > 0) and not (cph is not None and cph > 0):
            flag("M33", "gait_assumed_from_non_ambulatory_status")

    # ---- M34 ----
    if tetraparesis and not excluded:
        fire("M34")
        raise_("M34", "emergency")
        mri("M34", "mri_whole_spine_within_4h")
        act("M34", "spinal_surgical_opinion_now", "bladder_scan")
        flag("M34", "tetraparesis")

    # ---- M35 ----
    if primary == "myeloma" and history == "suspected":
        act("M35", "myeloma_screen_bloods")

    # ---- M36 ----
    if life is not None and life < 1 and (m1 or m3):
        act("M36", "goals_of_care_discussion")
        flag("M36", "consider_ceiling_of_care")

    # ---- H1 ----
    if h1:
        fire("H1")
        raise_("H1", "emergency")
        mri("H1", "mri_whole_spine_within_4h")
        act("H1", "spinal_surgical_opinion_now", "anticoagulation_review_now", "senior_steroid_decision_now")
        flag("H1", "consider_epidural_haematoma")

    # ---- Steroids ----
    s1 = m1 and not urgent_form and not haem_suspected and not steroid_diagnosis_open and not paediatric \
        and not _t(pres["infection_suspected"]) and not h1
    if s1:
        fire("S1")
        act("S1", "dexamethasone_16mg", "gastroprotection_ppi", "capillary_glucose_monitoring")
        if _t(treat["corticosteroids"]) or _t(treat["long_term_corticosteroids"]):
            flag("S1", "already_on_corticosteroids")
        if _t(treat["long_term_corticosteroids"]):
            flag("S1", "long_term_steroids_continue")
    if m1 and not urgent_form and haem_suspected:   # S2
        fire("S2")
        act("S2", "urgent_haemato_oncology_discussion")
        if steroid_decision_now:
            act("S2", "senior_steroid_decision_now")
        flag("S2", "haematological_malignancy_suspected_discuss_before_steroids")
    if m1 and not urgent_form and (steroid_diagnosis_open or paediatric) and not haem_suspected:   # S6
        fire("S6")
        if steroid_decision_now:
            act("S6", "senior_steroid_decision_now")
        flag("S6", "senior_review_before_steroids")
    if s1 and haem_primary:   # S3
        flag("S3", "discuss_steroids_with_haematology_mdt")
    if s1 and _t(patient["comorbidities"]["diabetes"]):   # S4
        flag("S4", "diabetes_steroid_hyperglycaemia_risk")
    if _t(treat["checkpoint_inhibitor"]) and neuro and not confirmed:   # S5
        fire("S5")
        if excluded:
            act("S5", "immune_related_adverse_event_pathway_now")
        flag("S5", "consider_immune_related_myelitis")
        if s1:
            flag("S5", "checkpoint_inhibitor_do_not_withhold_steroids")
    if (m1 or m3) and _t(pres["infection_suspected"]):   # S7
        fire("S7")
        act("S7", "blood_cultures_and_infection_markers", "senior_steroid_decision_now")
        flag("S7", "consider_spinal_infection")

    # ---- Definitive treatment ----
    if sins is not None:   # M9 (its condition: a SINS total; it asks for something from 7)
        fire("M9")
        if sins >= 7:
            raise_("M9", "urgent")
            act("M9", "urgent_spinal_surgical_opinion")
            if sins >= 13:
                act("M9", "spinal_precautions")
                mri("M9", "mri_whole_spine_within_24h")
                flag("M9", "sins_unstable")
            else:
                flag("M9", "sins_potentially_unstable")
    m10 = escc in ("2", "3")
    if m10:
        fire("M10")
        raise_("M10", "urgent")
        act("M10", "urgent_spinal_surgical_opinion")
        if confirmed and (neuro or para_pos):
            act("M10", "spinal_surgical_opinion_now")
        flag("M10", "high_grade_epidural_compression")
        if radioresistant and life is not None and life >= 3 and not (para_h is not None and para_h > 48):   # M11
            flag("M11", "consider_decompression_then_radiotherapy")
    if radiosensitive and confirmed:   # M12
        act("M12", "radiotherapy_referral")
        if haem_primary:
            act("M12", "haemato_oncology_discussion_today" if s1 else "urgent_haemato_oncology_discussion")
        if not (sins is not None and sins >= 13):
            flag("M12", "radiosensitive_histology_radiotherapy_first")
    m13 = m10 or (sins is not None and sins >= 13)
    if m13:
        flag("M13", "not_for_cementoplasty_alone")
    if fracture and pain and cancer_context and mri_done and assess["mri_compression"] is False and not m13 \
            and not m1 and escc not in ("1b", "1c"):   # M14
        act("M14", "cementoplasty_assessment")
    if para_h is not None and para_h > 48:   # M15
        flag("M15", "prolonged_paraplegia_over_48h")
    count = cancer["metastasis_count"]
    if count is not None and 1 <= count <= 5:   # M17
        flag("M17", "oligometastatic_consider_local_treatment")
    if pain and bone_mets and not neuro:   # M18
        flag("M18", "palliative_radiotherapy_for_pain")

    # ---- Calcium and bone health ----
    b1 = bone_mets and agent == "none"
    b2 = agent in ("denosumab", "bisphosphonate")
    if b1:
        act("B1", "consider_bone_modifying_agent", "phosphocalcic_assessment", "dental_assessment_with_panoramic",
            "vitamin_d_assay")
    if b2:
        act("B2", "annual_dental_review", "calcium_monitoring")
    vit_d = labs["vitamin_d_nmol_l"]
    if vit_d is not None and vit_d < 50 and not (calcium is not None and calcium > 2.60):   # B3
        act("B3", "vitamin_d_supplement_100000iu_monthly" if calcium is not None else "phosphocalcic_assessment")
    if calcium is not None and calcium > 2.60:   # B4
        flag("B4", "hypercalcaemia_avoid_calcium_supplement")
    if bone_mets and not (calcium is not None and calcium > 2.60) and (b1 or b2):   # B5
        flag("B5", "consider_daily_calcium_vitamin_d")
    hyper, hypo = _t(pres["hypercalcaemia_symptoms"]), _t(pres["hypocalcaemia_symptoms"])
    b8 = calcium is not None and (calcium >= 3.0 or (calcium >= 2.90 and hyper))
    crcl = labs["creatinine_clearance_ml_min"]
    if crcl is not None and crcl < 30 and (bone_mets or b2 or b8):   # B6
        flag("B6", "zoledronate_not_recommended_crcl_below_30", "denosumab_hypocalcaemia_risk_renal")
    if crcl is not None and 30 <= crcl <= 60 and agent == "bisphosphonate":   # B7
        flag("B7", "zoledronate_dose_reduction")
    if b8:
        fire("B8")
        raise_("B8", "emergency" if calcium >= 3.5 or (calcium >= 3.0 and hyper) else "urgent")
        act("B8", "iv_rehydration", "stop_calcium_vitamin_d", "ecg", "iv_bisphosphonate_for_hypercalcaemia")
        if history in ("none", "unknown"):
            act("B8", "hypercalcaemia_cause_workup")
        flag("B8", "significant_hypercalcaemia")
    if calcium is not None and calcium < 2.20:   # B9
        fire("B9")
        flag("B9", "hypocalcaemia_correct_before_bone_agent")
        if calcium < 1.90 or hypo:
            raise_("B9", "emergency")
            act("B9", "iv_calcium_replacement", "ecg")
            flag("B9", "severe_hypocalcaemia")

    # ---- step 4: withdrawals ----
    a = set(acts)
    if "mri_whole_spine_within_4h" in a:
        a -= {"mri_whole_spine_within_24h", "mri_whole_spine_within_1_week", "mri_within_4h_cauda_equina"}
    if "mri_whole_spine_within_24h" in a:
        a.discard("mri_whole_spine_within_1_week")
    if m13:
        a.discard("cementoplasty_assessment")
    if "cancer_diagnostic_workup" in a:
        a.discard("myeloma_screen_bloods")
    if "spinal_surgical_opinion_now" in a:
        a.discard("urgent_spinal_surgical_opinion")

    # ---- step 5: M16 and M6 ----
    if _t(treat["prior_spinal_radiotherapy"]) and "radiotherapy_referral" in a:
        flag("M16", "prior_spinal_radiotherapy_discuss_reirradiation")
    level = max((lvl for _, lvl in r.raised), key=RANK.__getitem__, default="routine")
    if level == "routine":
        fire("M6")
        if cancer_context and (bone_mets or pain):
            a.add("safety_net_advice")
            acts.setdefault("safety_net_advice", []).append("M6")

    # ---- step 6: M37 ----
    if _t(assess["mri_contraindicated"]) and a & set(MRI):
        a = {CT.get(x, x) for x in a}
        flag("M37", "mri_contraindicated_ct_route")

    r.urgency, r.actions, r.asked = level, a, acts
    r.because = {x: acts[x] if x in acts else acts[next(m for m, c in CT.items() if c == x)] for x in a}
    return r


def actions_and_flags(n: dict[str, Any], raw: Optional[dict[str, Any]] = None) -> tuple[set[str], set[str]]:
    r = read(n, raw)
    return r.actions, r.flags


# ---------------------------------------------------------------- unknowns

def _trials(n: dict[str, Any]) -> list[tuple[str, list[tuple[tuple[str, ...], Any]]]]:
    """Every candidate (listed field) with its trials, each a list of (path, value) to set."""
    pres = n["presentation"]
    out: list[tuple[str, list[list[tuple[tuple[str, ...], Any]]]]] = []
    for group, subs in GROUP_SUBS.items():
        node = pres[group]
        if node["present"] is None:
            trials = [[(("presentation", group, "present"), True)]]
            trials += [[(("presentation", group, s), True)] for s in subs if node[s] is None]
            out.append((f"presentation.{group}.present", trials))
        elif node["present"] is True:
            for s in subs:
                if node[s] is None:
                    out.append((f"presentation.{group}.{s}", [[(("presentation", group, s), True)]]))
    for name in ("gait_difficulty", "sexual_dysfunction", "infection_suspected"):
        if pres[name] is None:
            out.append((f"presentation.{name}", [[(("presentation", name), True)]]))
    calcium = n["labs"]["corrected_calcium_mmol_l"]
    if pres["hypocalcaemia_symptoms"] is None and calcium is not None and calcium < 2.20:
        out.append(("presentation.hypocalcaemia_symptoms", [[(("presentation", "hypocalcaemia_symptoms"), True)]]))
    if pres["hypercalcaemia_symptoms"] is None and calcium is not None and calcium >= 2.90:
        out.append(("presentation.hypercalcaemia_symptoms", [[(("presentation", "hypercalcaemia_symptoms"), True)]]))
    if n["assessment"]["new_findings_since_mri"] is None and n["assessment"]["mri_performed"] is True:
        out.append(("assessment.new_findings_since_mri", [[(("assessment", "new_findings_since_mri"), True)]]))
    if pres["weakness"]["present"] is True and pres["weakness"]["onset_hours"] is None:
        out.append(("presentation.weakness.onset_hours", [[(("presentation", "weakness", "onset_hours"), 1)]]))
    if pres["ambulatory_status"] is None and (pres["weakness"]["present"] is True or pres["gait_difficulty"] is True) \
            and pres["gait_difficulty"] is not False:
        out.append(("presentation.ambulatory_status",
                    [[(("presentation", "ambulatory_status"), "non_ambulatory"),
                      (("presentation", "non_ambulatory_hours"), 1)]]))
    return out   # type: ignore[return-value]


def unknowns(n: dict[str, Any], renormalise: Callable[[dict[str, Any]], Optional[dict[str, Any]]],
             base: Optional[Reading] = None) -> dict[str, tuple[str, set[str], set[str]]]:
    """The spec's ``unknowns`` of the normalised case ``n``: {field: (could_raise_to, flags, actions)}.

    ``renormalise`` normalises a trial case again (None when the case format rejects it: no trial)."""
    base = base or read(n)
    base_critical = base.flags & set(CRITICAL)
    base_imaging = base.actions & set(IMAGING_FOR_UNKNOWNS)
    found: dict[str, tuple[str, set[str], set[str]]] = {}
    for name, trials in _trials(n):
        best: Optional[str] = None
        flags: set[str] = set()
        acts: set[str] = set()
        for trial in trials:
            case = copy.deepcopy(n)
            for path, value in trial:
                node = case
                for key in path[:-1]:
                    node = node[key]
                node[path[-1]] = value
            again = renormalise(case)
            if again is None:
                continue
            t = read(again)
            new_flags = (t.flags & set(CRITICAL)) - base_critical
            new_acts = (t.actions & set(IMAGING_FOR_UNKNOWNS)) - base_imaging
            if RANK[t.urgency] > RANK[base.urgency] or new_flags or new_acts:
                if best is None or RANK[t.urgency] > RANK[best]:
                    best = t.urgency
                flags |= new_flags
                acts |= new_acts
        if best is not None:
            found[name] = (best, flags, acts)
    return found

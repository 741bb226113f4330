-- wrk script: POST /v1/triage with a rotating set of cases of every urgency.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local cases = {
  '{"patient": {"cancer": {"history": "current", "primary": "prostate"}}, "presentation": {"focal_vertebral_pain": {"present": true}, "weakness": {"present": true, "limbs": "legs", "bilateral": true, "progressive": true}}}',
  '{"patient": {"cancer": {"history": "current", "primary": "lung"}}, "presentation": {"focal_vertebral_pain": {"present": true, "nocturnal": true}}}',
  '{}',
  '{"patient": {"cancer": {"history": "current", "primary": "breast", "bone_metastases": true}, "treatments": {"bone_modifying_agent": "denosumab"}}, "labs": {"corrected_calcium_mmol_l": 2.61, "creatinine_clearance_ml_min": 45}}',
  '{"patient": {"cancer": {"history": "none"}}, "presentation": {"sciatica": {"present": true, "bilateral": true}}}',
  '{"patient": {"age_years": 130}}',
}
local i = 0
request = function()
  i = i + 1
  return wrk.format(nil, nil, nil, cases[(i % #cases) + 1])
end

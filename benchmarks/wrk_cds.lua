-- wrk script: POST /cds-services/mscc-triage with FHIR R4 prefetch (no JWT configured).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
 "context": {"userId": "Practitioner/1", "patientId": "p1"},
 "prefetch": {
  "patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1954-06-02"},
  "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": [
    {"resource": {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "clinicalStatus": {"coding": [{"code": "active"}]},
      "code": {"coding": [{"system": "http://snomed.info/sct", "code": "399068003"}]}}},
    {"resource": {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "clinicalStatus": {"coding": [{"code": "active"}]},
      "code": {"coding": [{"system": "http://snomed.info/sct", "code": "94222008"}]}}}]},
  "observations": {"resourceType": "Bundle", "type": "searchset", "entry": [
    {"resource": {"resourceType": "Observation", "subject": {"reference": "Patient/p1"}, "status": "final",
      "code": {"coding": [{"system": "http://snomed.info/sct", "code": "161891005"}]}, "valueBoolean": true}}]}}}]]

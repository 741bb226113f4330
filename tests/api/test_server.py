"""The real server: gunicorn with several workers and threads, under concurrent load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import triage

from serverctl import ROOT, server_log, start_server, stop_server  # tests/api is on sys.path


def post(url: str, case) -> tuple[int, str]:
    data = json.dumps(case).encode()
    request = urllib.request.Request(url + "/v1/triage", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def make_case(i: int) -> dict:
    kind = i % 6
    case: dict = {"case_id": f"req-{i}"}
    if kind == 0:
        case.update(patient={"cancer": {"history": "current"}}, presentation={"weakness": {"present": True, "onset_hours": i % 97}})
    elif kind == 1:
        case.update(patient={"cancer": {"history": "current"}}, presentation={"focal_vertebral_pain": {"present": True}})
    elif kind == 2:
        case.update(labs={"corrected_calcium_mmol_l": round(2.0 + (i % 30) / 10, 1)})
    elif kind == 3:
        case.update(patient={"age_years": 121 + i % 5})           # invalid: 422
    elif kind == 4:
        case.update(patient={"cancer": {"history": "none"}}, presentation={"sciatica": {"present": True, "bilateral": i % 2 == 0}})
    else:
        case.update(assessment={"sins": {"total": i % 19}}, patient={"cancer": {"history": "past"}})
    return case


def test_concurrent_requests_each_get_their_own_result(server):
    cases = [make_case(i) for i in range(480)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda c: post(server, c), cases))
    for case, (status, body) in zip(cases, answers):
        try:
            expected = triage.evaluate(case).to_json()
        except triage.CaseValidationError as exc:
            assert status == 422, case
            assert json.loads(body)["errors"] == [p.as_dict() for p in exc.problems]
            continue
        assert status == 200, (case, body)
        assert body == expected, case["case_id"]


def test_a_broken_ruleset_stops_the_server_from_starting(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    (rules / "mscc.yaml").write_text((rules / "mscc.yaml").read_text().replace("- analgesia\n", "- analgesics\n"))
    proc, _ = start_server("--ruleset", str(rules))
    try:
        assert proc.wait(timeout=20) == 3
        err = server_log(proc)
        assert "mscc.yaml, rule mscc.analgesia" in err and "'analgesics' is not in the vocabulary" in err
    finally:
        stop_server(proc)


def test_threads_come_from_mscc_threads_when_the_option_is_not_given():
    # `triage serve` used to pass its option's default (2) over MSCC_THREADS, so the setting was ignored
    proc, url = start_server("--workers", "1", env={"MSCC_THREADS": "3"})
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
            assert response.status == 200
        assert "1 worker processes x 3 threads" in server_log(proc)
    finally:
        stop_server(proc)
    proc, url = start_server("--workers", "1", "--threads", "5", env={"MSCC_THREADS": "3"})
    try:
        assert "1 worker processes x 5 threads" in server_log(proc)   # the option wins over the setting
    finally:
        stop_server(proc)


def test_gunicorn_runs_the_threads_the_settings_name():
    def threads(**env: str) -> int:   # gunicorn's settings module, read in a fresh process, no other MSCC_ setting
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MSCC_")}
        out = subprocess.run([sys.executable, "-c", "import mscc_triage_api.server.gunicorn_conf as c; print(c.threads)"],
                             env={**clean, **env}, capture_output=True, text=True, check=True)
        return int(out.stdout)

    assert threads() == 8                                   # SQLite record: threads wait on its fsync together
    assert threads(MSCC_RECORD_DSN="postgresql://db.example/mscc") == 2   # a PostgreSQL connection each
    assert threads(MSCC_THREADS="3", MSCC_RECORD_DSN="postgresql://db.example/mscc") == 3

"""The public interface is declared once, and the core never imports Flask."""

import subprocess
import sys

import triage


def test_all_names_exist_and_nothing_private_is_exported():
    for name in triage.__all__:
        assert hasattr(triage, name), name
        assert not name.startswith("_") or name == "__version__"
    assert {"evaluate", "load_ruleset", "Case", "Result", "CaseValidationError", "RulesetError",
            "EngineError", "TriageError"} <= set(triage.__all__)


def test_error_tree_and_codes():
    for cls in (triage.CaseValidationError, triage.RulesetError, triage.EngineError, triage.VignetteFormatError):
        assert issubclass(cls, triage.TriageError)
    codes = [c.code for c in (triage.CaseValidationError, triage.RulesetError, triage.EngineError,
                              triage.VignetteFormatError)]
    assert len(set(codes)) == 4


def test_core_and_cli_import_without_flask():
    code = ("import sys, triage, triage.cli, triage._vignettes; "
            "triage.evaluate({}); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug', 'api', "
            "'mscc_triage_api', 'gunicorn', 'jwt')); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_evaluate_accepts_a_case_object_and_a_dict():
    case = triage.parse_case({"patient": {"cancer": {"history": "current"}},
                              "presentation": {"gait_difficulty": True}})
    assert triage.evaluate(case).urgency == triage.evaluate(case.model_dump()).urgency == "emergency"

"""The triage web form, in English (``/``) and French (``/fr/``): server-rendered, no JavaScript needed.

The form layer translates its own widgets (radio buttons, selects, number inputs) into a case; the
engine receives real JSON booleans and numbers. A value the form cannot read is a field error shown
next to the field, never dropped. Every word shown comes from ``rules/form.yaml``,
``rules/vocabulary.yaml`` (English labels) and ``rules/labels.fr.yaml`` (French labels), loaded and
checked when the app starts (``triage.load_form_texts``): a broken file stops the start, never a request.
If the engine fails, the page says so in its own language, keeps the answers and asks for triage
by clinical judgement meanwhile (503); any other failure of a form page is an HTML page too, never JSON.

The language button posts the answers to the other language's page (``_switch``): the answers stay,
and the page is triaged again only if it had been (``_triaged``). "New case" posts the answers to a
confirmation page (``/new``, ``/fr/new``) that either clears them or sends them back the same way. A result comes with a plain-text
note for the patient's record (``triage_note.html``: findings given, urgency, timed actions, flags,
what is still to ask, date and time, ruleset version), which ``note.js`` copies and the page prints.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any, Optional

from flask import Blueprint, Flask, current_app, redirect, render_template, request, url_for
from markupsafe import Markup
from werkzeug.exceptions import BadRequest, HTTPException

import triage
from triage import FIELDS, FormTexts, RecordUnavailable, load_form_texts, set_path, source_parts

from . import record_hook
from .body import FRAMING_ERRORS, framing_problem

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/static/web")
LANGUAGES = ("en", "fr")
TEXTS = "mscc_form_texts"   # app.extensions key of the checked FormTexts
log = logging.getLogger("mscc_triage.web")


def texts() -> FormTexts:
    """The form's words, loaded and checked when the app started."""
    return current_app.extensions[TEXTS]


def _lang_of_request() -> str:
    return "fr" if request.path.startswith("/fr/") else "en"


# ------------------------------------------------------------------------------------ form -> case

# A number as a clinician types it: ASCII digits, at most one decimal mark ("." or ","), an optional sign
# (a negative number then gets the case's own range message). No exponent, no "_", no other script's digits.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:[.,][0-9]*)?|[.,][0-9]+)")
# "1,000" or "12.500": a thousands separator, or a decimal mark followed by three digits? Refused, never
# guessed (read as 1.0, a post-void residual of "1,000" mL would drop the cauda equina red flag).
_GROUPED = re.compile(r"[+-]?[1-9][0-9]{0,2}(?:[.,][0-9]{3})+")


def _within(value: float, spec: Any) -> bool:
    return (spec.minimum is None or value >= spec.minimum) and (spec.maximum is None or value <= spec.maximum)


def _only_decimal(raw: str, spec: Any) -> bool:
    """Whether "2.495" can only be a decimal for this field: read with a decimal mark it is within the
    field's range, read as thousands it is not (a calcium of 2495 mmol/L). The CDS card's form link
    writes a calcium converted from mg/dL with three decimals; it used to be refused as ambiguous."""
    if raw.count(",") + raw.count(".") != 1:   # "1,000,000": no decimal reading at all
        return False
    decimal = float(raw.replace(",", "."))
    grouped = float(raw.replace(",", "").replace(".", ""))
    return _within(decimal, spec) and not _within(grouped, spec)


def _answers(form: Any, path: str) -> list[str]:
    """Every non-empty answer the form sent for a field (a browser sends one; a script may send more)."""
    sent = form.getlist(path) if hasattr(form, "getlist") else [form.get(path)]
    return [text for text in ((value or "").strip() for value in sent) if text]


def case_from_form(form: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The case the form describes, and the form's own errors (field path -> message code)."""
    case: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for path, spec in FIELDS.items():
        answers = _answers(form, path)
        if not answers:
            continue
        if len(set(answers)) > 1:   # two different answers to one question: neither is taken
            errors[path] = "answered_twice"
            continue
        raw = answers[0]
        value: Any
        if spec.kind == "tristate":
            if raw not in ("true", "false"):
                errors[path] = "invalid_value"
                continue
            value = raw == "true"
        elif spec.kind == "enum":
            if raw not in spec.values:
                errors[path] = "invalid_value"
                continue
            value = raw
        elif spec.kind == "integer":
            # 12 digits at most (a count or days past 10^12 is a typing error; never int() on more); a zero
            # fraction is a whole number, as in the API (case-format 2.2: 67.0 is 67), "67,000" stays ambiguous
            whole = None if _GROUPED.fullmatch(raw) else re.fullmatch(r"([+-]?[0-9]{1,12})(?:[.,]0+)?", raw)
            if whole is None:
                errors[path] = ("ambiguous_number" if _GROUPED.fullmatch(raw) else
                                "not_a_whole_number" if re.fullmatch(r"[+-]?[0-9]+", raw) is None else "invalid_value")
                continue
            value = int(whole[1])
        else:
            if _GROUPED.fullmatch(raw) and not _only_decimal(raw, spec):
                errors[path] = "ambiguous_number"
                continue
            if not _NUMBER.fullmatch(raw) or len(raw) > 40:
                errors[path] = "not_a_number"
                continue
            value = float(raw.replace(",", "."))
            if value != value or value in (float("inf"), float("-inf")):
                errors[path] = "not_a_number"
                continue
        set_path(case, path, value)
    return case, errors


def form_values(case: dict[str, Any]) -> dict[str, str]:
    """The form's answers for a case (the inverse of :func:`case_from_form`, for what the case gives)."""
    values: dict[str, str] = {}
    for path in FIELDS:
        node: Any = case
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None or isinstance(node, dict):
            continue
        values[path] = ("true" if node else "false") if isinstance(node, bool) else str(node)
    return values


def message_for(problem: triage.Problem, lang: str, t: FormTexts) -> str:
    """A core problem in the page's language, built from its code (the core's reasons are English)."""
    template = t.messages.get(problem.code, t.messages["invalid_value"])[lang]
    other = ""
    if problem.code == "contradiction":
        mentioned = [p for p in re.findall(r"[a-z_]+(?:\.[a-z_0-9]+)+", problem.reason) if p in FIELDS and p != problem.path]
        other = t.fields[mentioned[0]][lang] if mentioned else ""
        sums = re.fullmatch(r"is (\d+), but the six components add up to (\d+)", problem.reason)
        if sums and not mentioned:   # the SINS total against its components: no other field to name
            return t.messages["sins_sum"][lang].format(given=sums.group(1), computed=sums.group(2))
    op, bound = "", ""
    match = re.search(r"must be (<=|>=) (\S+)", problem.reason)
    if match:
        op = "≤" if match.group(1) == "<=" else "≥"
        bound = re.sub(r"(?<=\d)\.0+$", "", match.group(2))   # 2000, not 2000.0 (a float field's bound)
        bound = bound.replace(".", ",") if lang == "fr" else bound
    return template.format(other=other, op=op, bound=bound)


def _problem_field(path: str, fields_shown: set[str]) -> Optional[str]:
    if path in fields_shown:
        return path
    if path == "assessment.sins":
        return "assessment.sins.total"
    return None


# ------------------------------------------------------------------------------------ views

def _readable_form() -> None:
    """A posted form whose bytes are not UTF-8 is a 400 page that says no result was produced: werkzeug
    reads such a body as an empty form, and the page came back 200 with every answer gone and "no spinal
    symptom asked yet" (audit of 6 December). Read before ``request.form``, which then parses the same
    cached bytes."""
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        try:
            request.get_data(cache=True).decode("utf-8")
        except UnicodeDecodeError:
            log.warning("form page: a posted form that is not UTF-8 text (400, nothing read)")
            raise BadRequest("The form's answers are not UTF-8 text.") from None


def _page(lang: str):  # type: ignore[no-untyped-def]
    from . import ruleset_of

    _readable_form()
    rs = ruleset_of(current_app)
    t = texts()
    values: dict[str, str] = {}
    field_errors: dict[str, str] = {}
    general_errors: list[str] = []
    result = None
    engine_failed = False
    record_failed = False
    triaged = request.method == "POST" and ("_switch" not in request.form or "_triaged" in request.form)
    prefilled = False
    prefill_lost = False
    if request.method == "POST":
        values = {k: v for k, v in request.form.items() if k in FIELDS}
    elif request.args.get("from"):
        from .cds.service import prefilled_answers

        answers = prefilled_answers(current_app, request.args["from"])
        if answers is not None:
            values, prefilled = form_values(answers), True
        else:   # an expired or unknown link: say so, never a blank form that looks like the record's
            prefill_lost = True
    if triaged:
        case, form_errors = case_from_form(request.form)
        for path, code in form_errors.items():
            field_errors[path] = t.messages[code][lang]
        # A browser posts only the form's own fields; a script's misspelt or foreign one is named, never
        # dropped (the JSON API refuses unknown keys the same way), and a body that is not form data too.
        multipart = request.mimetype == "multipart/form-data" and bool(request.mimetype_params.get("boundary"))
        if request.mimetype != "application/x-www-form-urlencoded" and not multipart \
                and (request.content_length or request.get_data(cache=True)):
            general_errors.append(t.messages["not_form_data"][lang])
        for name in list(request.files.keys())[:5]:   # werkzeug keeps a part with a filename apart
            general_errors.append(t.messages["file_part"][lang].format(name=name[:60]))
        for name in [k for k in request.form.keys() if k not in FIELDS and not k.startswith("_")][:5]:
            general_errors.append(t.messages["unknown_field"][lang].format(name=name[:60]))
        if not form_errors and not general_errors:
            try:
                valid = triage.validate_case(case)   # once: the evaluation and the record share it
                result = rs.evaluate(valid)
                record_hook.record("form", valid, result)   # never a result shown unrecorded
            except triage.CaseValidationError as exc:
                shown = set(FIELDS)
                for problem in exc.problems:
                    target = _problem_field(problem.path, shown)
                    text = message_for(problem, lang, t)
                    if target:
                        field_errors.setdefault(target, text)
                    else:
                        general_errors.append(text)
            except triage.EngineError:
                # Never the case in the log. The answers stay on screen for another try.
                log.error("triage engine failure on the form (%s)", request.path)
                engine_failed = True
            except RecordUnavailable as exc:
                # Same rule as the JSON API and CDS Hooks: no decision is shown that was not recorded.
                log.error("decision record unavailable on the form (%s): %s", request.path, exc)
                result, record_failed = None, True
    status = 503 if engine_failed or record_failed else 422 if (field_errors or general_errors) else 200
    rules = {r.id: r for r in rs.data.rules}
    asked = symptoms_asked(values)
    context = dict(lang=lang, t=t, fields=FIELDS, values=values, result=result, ruleset=rs, rules=rules,
                   shown=display_values(values, lang, t), raising=_raising(result),
                   # Nothing of the five symptom groups answered: a routine result is not shown as one
                   # (it would reassure about questions never asked). An urgent or emergency result is.
                   not_enough=bool(result is not None and not asked and result.urgency == "routine"),
                   not_assessed=not_assessed(values, result, t),
                   cited=cited_sources(result, rules, lang, t) if result is not None else None,
                   now=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M (UTC%z)"))
    # Rendered (and so escaped) as HTML: it is shown in the page as it is.
    note = Markup(render_template("triage_note.html", **context).strip() + "\n") if result and not context["not_enough"] else ""
    return render_template(
        "triage_form.html", **context, field_errors=field_errors, general_errors=general_errors,
        engine_failed=engine_failed, record_failed=record_failed, triaged=triaged, note=note, prefilled=prefilled, prefill_lost=prefill_lost,
        other_lang_url="/fr/" if lang == "en" else "/", self_url="/" if lang == "en" else "/fr/",
    ), status


# The five symptom groups of the case model: until one of their findings is answered, nothing was asked.
SYMPTOM_GROUPS = ("focal_vertebral_pain", "weakness", "paraesthesia", "sphincter_disturbance", "sciatica")


def symptoms_asked(values: dict[str, str]) -> bool:
    """True when a finding of the five symptom groups (their ``present`` or any sub-finding) is answered."""
    prefixes = tuple(f"presentation.{g}." for g in SYMPTOM_GROUPS)
    return any(path.startswith(prefixes) and (raw or "").strip() for path, raw in values.items())


def not_assessed(values: dict[str, str], result: Any, t: FormTexts) -> list[str]:
    """The symptom questions left unanswered, in the form's order, for the note (what was not examined).

    The questions of the presentation's groups that are asked on their own (a follow-up only when its
    question is "Yes"), and every unknown the result names, each once; the result's unknowns first.
    """
    out: list[str] = [u.field for u in result.unknowns] if result is not None else []
    for group in t.groups:
        if not any(p.startswith("presentation.") for p in group.fields):
            continue
        for path, follow_ups in group.items:
            asked = [path] + (list(follow_ups) if (values.get(path) or "").strip() == "true" else [])
            for field in asked:
                if field.startswith("presentation.") and not (values.get(field) or "").strip() and field not in out:
                    out.append(field)
    return out


def cited_sources(result: Any, rules: dict[str, Any], lang: str, t: FormTexts) -> dict[str, Any]:
    """The result's sources, each once, numbered: current national guidance first (``source_rank``).

    Returns ``{"list": [citation, ...], "of": {source string: [numbers]}}``, so that an action or a
    rule refers to its sources by number instead of repeating them.
    """
    from triage import source_rank

    strings = [a.source or "" for a in result.actions] + [rules[r.id].source or "" for r in result.fired_rules if r.id in rules]
    parts: list[str] = []
    for source in strings:
        for part in source_parts(source):
            if part not in parts:
                parts.append(part)
    parts.sort(key=source_rank)   # stable: within a rank, the order the result first cites them
    listed: list[str] = []
    number: dict[str, int] = {}
    for part in parts:
        text = t.sources.get(part, {}).get(lang, part)
        if text not in listed:
            listed.append(text)
        number[part] = listed.index(text) + 1
    of = {source: sorted({number[p] for p in source_parts(source)}) for source in strings}
    return {"list": listed, "of": of}


def _raising(result: Any) -> Optional[str]:
    """The highest urgency an unknown could lead to, when it is above the result's; else None."""
    return None if result is None else result.raised_by_unknowns()


def display_values(values: dict[str, str], lang: str, t: FormTexts) -> list[tuple[str, str]]:
    """The answers given, in the form's order, as (label, answer) in the page's language."""
    shown = []
    for group in t.groups:
        for path in group.fields:
            raw = (values.get(path) or "").strip()
            if not raw:
                continue
            spec = FIELDS[path]
            if spec.kind == "tristate":
                answer = t.words["yes" if raw == "true" else "no"][lang] if raw in ("true", "false") else raw
            elif spec.kind == "enum":
                answer = t.choices.get(raw, {}).get(lang, raw)
            else:
                answer = raw
            shown.append((t.fields[path][lang], answer))
    return shown


LANGS = ("en", "fr")


def _browser_lang() -> Optional[str]:
    """The form language the browser prefers (``Accept-Language``, highest quality first, a tag read by its
    primary subtag: ``fr-CA`` is French), or None when it names neither. werkzeug's ``best_match`` prefers
    an exact tag of any quality (``fr-CA;q=0.5, en;q=0.4`` gave English), so the tags are read here."""
    for tag, _quality in request.accept_languages:   # highest quality first
        primary = tag.split("-", 1)[0].lower()
        if primary in LANGS:
            return primary
    return None


def _language_redirect(lang: str):  # type: ignore[no-untyped-def]
    """On a GET of a form page: ``?lang=fr`` / ``?lang=en`` goes to that language's page; without it, the
    English page (``/``) sends a browser that prefers French to ``/fr/``. The other query parameters (a CDS
    card's ``from``) go along. None: this page is the one to show."""
    if request.method != "GET":
        return None   # a posted form is answered where it was posted (its language button posts here)
    asked = request.args.get("lang")
    wanted = asked if asked in LANGS else (_browser_lang() if lang == "en" and asked is None else None)
    if wanted is None or wanted == lang:
        return None
    args = {k: v for k, v in request.args.items(multi=True) if k != "lang"}
    return redirect(url_for(".form_fr" if wanted == "fr" else ".form_en", **args), code=302)


@bp.route("/", methods=["GET", "POST"])
def form_en():  # type: ignore[no-untyped-def]
    return _varies(_language_redirect("en") or _page("en"))


@bp.route("/fr/", methods=["GET", "POST"])
def form_fr():  # type: ignore[no-untyped-def]
    return _language_redirect("fr") or _page("fr")


def _varies(page: Any) -> Any:
    """The English page's GET (a page or a redirect) depends on Accept-Language (a French browser is sent
    to /fr/): say so to caches."""
    response = current_app.make_response(page)
    if request.method == "GET":
        response.vary.add("Accept-Language")
    return response


def _new_case(lang: str):  # type: ignore[no-untyped-def]
    """"New case" asks first (no JavaScript needed): clearing answers nobody kept cannot be undone.

    The answers come posted from the form and go back, unchanged, with "Keep the answers" (as the
    language button does: the page is triaged again only if it had been); "Clear" opens an empty form.
    """
    _readable_form()
    self_url = "/" if lang == "en" else "/fr/"
    kept = {k: v for k, v in request.form.items() if k in FIELDS and (v or "").strip()}
    return render_template("triage_new.html", lang=lang, t=texts(), kept=kept, self_url=self_url,
                           triaged="_triaged" in request.form,
                           answered=len(kept)), 200


@bp.route("/new", methods=["GET", "POST"])
def new_en():  # type: ignore[no-untyped-def]
    return _new_case("en")


@bp.route("/fr/new", methods=["GET", "POST"])
def new_fr():  # type: ignore[no-untyped-def]
    return _new_case("fr")


@bp.errorhandler(Exception)
def _form_page_failed(exc: Exception):  # type: ignore[no-untyped-def]
    """Any failure on a form page is a page in its language, never the API's JSON problem.

    A body whose chunked framing cannot be read (werkzeug reads the form from it) is the client's
    error: 400 (431 for an oversized trailer section), as on the JSON API, never a 500."""
    if isinstance(exc, FRAMING_ERRORS):
        status = framing_problem(exc).response.status_code
        log.warning("form page: malformed body (%s) on %s %s", type(exc).__name__, request.method, request.path)
    else:
        status = (exc.code or 500) if isinstance(exc, HTTPException) else 500
    if status >= 500:
        log.error("form page failed: %s on %s %s", type(exc).__name__, request.method, request.path)
    lang = _lang_of_request()
    return render_template("triage_error.html", lang=lang, t=texts(), status=status,
                           self_url="/?lang=en" if lang == "en" else "/fr/"), status


def init_app(app: Flask) -> None:
    """Register the form blueprint; its words are loaded and checked now, like the rules."""
    from . import ruleset_of

    loaded = load_form_texts(ruleset_of(app))
    for note in loaded.unused:
        log.warning("form texts: %s", note)
    app.extensions[TEXTS] = loaded
    app.register_blueprint(bp)

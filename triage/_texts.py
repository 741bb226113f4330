"""The form's words (``form.yaml``, ``labels.fr.yaml``), loaded and checked like the rules.

They are ruleset data (shipped with the rules), so the core checks them: the command line
(``triage rules check``, ``triage serve``) and the HTTP app (``mscc_triage_api``, when it starts)
both call :func:`load_form_texts`, public as ``triage.load_form_texts``. A broken file never
reaches a request: anything wrong raises :class:`triage.RulesetError` (exit 3 on the command line)
naming the file, the key and the reason, with a "did you mean" hint where one helps:

- a file that is missing, is not YAML, or repeats a key;
- a section or an entry of the wrong shape (each text is ``{en: ..., fr: ...}``, both non-empty);
- a missing key: a case field without a label or a group, a choice of the case model without a
  label, a word or a message the page uses, a vocabulary action or flag without a French label, a
  rule headline (any of its variants) without a French headline (``labels.fr.yaml``,
  ``headlines.texts``, keyed by the English text; a headline that names a scan, ``{scan}``, is
  given once, keyed by the rule file's text, and every route's variant is made from the French
  words of the ``scans`` section);
- a route or a scan of the vocabulary's ``scans`` table without its French words (``labels.fr.yaml``,
  ``scans``: a route's word and order, a scan's reach and headline words);
- a message whose ``{placeholders}`` the form cannot fill;
- a follow-up question (``groups[].follow_ups``: asked when its gate is answered "yes") whose gate
  is not a yes/no finding of the same group, or that is not in the group, or is listed twice;
- a rule without a French title (``labels.fr.yaml``, ``titles``), a part of a rule's ``source``
  without a readable citation in both languages (``form.yaml``, ``sources``: the rule files keep
  their internal references, such as ``seed-003``; clinicians see the citation).

French texts get French typography when they are loaded (:func:`french_typography`): a no-break
space before ``: ; ! ? %`` and inside « », so that the files stay plain to edit.

Entries the ruleset does not know (a label for a field the case model lacks, a French label for an
id the vocabulary lacks, a headline for a rule that does not exist) are not shown anywhere; they
are listed in :attr:`FormTexts.unused` (with a hint) rather than refused, so that the form's files can
run ahead of the case model and the rules while those change. A test keeps the shipped files free of them.
"""

from __future__ import annotations

import difflib
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import yaml

from ._case import FIELDS, unknown_fields
from ._errors import RulesetError
from ._result import source_parts
from ._ruleset import SEVERITIES
from ._scans import ScanTable
from ._triage import Ruleset

FORM_FILE = "form.yaml"
LABELS_FR_FILE = "labels.fr.yaml"
LANGUAGES = ("en", "fr")
URGENCIES = ("emergency", "urgent", "routine")
SINS_CATEGORIES = ("stable", "potentially_unstable", "unstable")

# Every word the page uses (the HTTP app's templates, mscc_triage_api/templates/*), by key of ``words``.
PAGE_WORDS = (
    "yes", "no", "not_assessed", "not_known", "title", "intro", "new_or_worse", "submit", "reset", "switch",
    "result", "actions", "flags", "still_to_ask", "would_raise", "colon", "semicolon", "sins_score", "why", "ruleset",
    "errors_title", "disclaimer", "print", "engine_error_title", "engine_error_body", "engine_error_retry",
    "error_title", "error_body", "back_to_form",
    "so_far", "ask_first_raise", "ask_first_flags", "critical_flags", "other_flags", "note_title", "copy", "copied",
    "copy_failed", "findings_given", "none_given", "triaged_at", "prefilled", "prefill_lost", "record_error_title", "withheld", "release",
    "not_enough", "not_enough_body", "ask_first", "then", "sources", "not_assessed_list",
    "new_case_title", "new_case_body", "new_case_nothing", "new_case_keep", "new_case_confirm",
)
# Every message code the form shows, with the placeholders it may use.
MESSAGES: dict[str, frozenset[str]] = {
    "not_a_number": frozenset(),
    "not_a_whole_number": frozenset(),
    "ambiguous_number": frozenset(),
    "answered_twice": frozenset(),
    "unknown_field": frozenset({"name"}),
    "not_form_data": frozenset(),
    "file_part": frozenset({"name"}),
    "sins_sum": frozenset({"given", "computed"}),
    "out_of_range": frozenset({"op", "bound"}),
    "contradiction": frozenset({"other"}),
    "incomplete_sins": frozenset(),
    "invalid_value": frozenset(),
}
TEXT_KEYS = frozenset(LANGUAGES)
FIELD_KEYS = frozenset({*LANGUAGES, "help", "condition"})


@dataclass(frozen=True)
class FormGroup:
    """A group of the form: its label and the case fields it asks."""

    id: str
    label: Mapping[str, str]
    fields: tuple[str, ...]
    # The fields in the order shown, each with its follow-up questions (asked when it is "yes").
    items: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class FormTexts:
    """Every word the form shows, in both languages, checked complete."""

    groups: tuple[FormGroup, ...]
    fields: Mapping[str, Mapping[str, str]]            # case field -> {en, fr}
    help: Mapping[str, Mapping[str, str]]              # case field -> {en, fr}, for some fields
    choices: Mapping[str, Mapping[str, str]]
    words: Mapping[str, Mapping[str, str]]
    messages: Mapping[str, Mapping[str, str]]
    actions: Mapping[str, Mapping[str, str]]           # vocabulary id -> {en, fr}
    flags: Mapping[str, Mapping[str, str]]
    headlines: Mapping[str, Mapping[str, str]]         # English headline -> {en, fr}
    titles: Mapping[str, Mapping[str, str]] = field(default_factory=dict)   # rule id -> {en, fr}
    sources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # source part -> {en, fr}
    unused: tuple[str, ...] = field(default=())        # entries the ruleset does not know (see above)
    reasons: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # why an action is held -> {en, fr}
    orders: Mapping[str, Mapping[str, str]] = field(default_factory=dict)   # scan action -> its draft order {en, fr}
    # "still to ask" for a field that is not a yes/no finding: the answer that would raise the triage,
    # in place of "if present" (weakness onset: "if it began less than 48 hours ago") -> {en, fr}
    conditions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def if_raised(self, path: str, lang: str) -> str:
        """What a "still to ask" line says before the urgency: "if present:", or, for a field with no
        yes/no answer, its condition ("if unable to walk:"), in ``lang``."""
        condition = self.conditions.get(path)
        if condition is None:
            return self.words["would_raise"][lang]
        return condition[lang] + self.words["colon"][lang].rstrip(" ")

    def citations(self, source: str, lang: str) -> list[str]:
        """The readable citations of a rule's or an action's ``source``, each once, in ``lang``."""
        out: list[str] = []
        for part in source_parts(source):
            text = self.sources.get(part, {}).get(lang, part)
            if text not in out:
                out.append(text)
        return out


_NBSP = "\u00a0"
# A headline, in either language, is the summary of a CDS Hooks card, which must be under 140 characters.
HEADLINE_MAX = 139


def french_typography(text: str) -> str:
    """A no-break space before ``: ; ! ? %`` and inside guillemets (written as plain spaces in the files)."""
    text = re.sub(r" +([:;!?%»])", _NBSP + r"\1", text)
    text = re.sub(r"« +", "«" + _NBSP, text)
    return text


class _NoDuplicateLoader(yaml.SafeLoader):
    """A safe loader that refuses a key written twice in one mapping (the second would win silently)."""


def _mapping_without_duplicates(loader: _NoDuplicateLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key '{key}' appears twice in one mapping", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_NoDuplicateLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _hint(name: str, candidates: Iterable[str]) -> Optional[str]:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean {close[0]}?" if close else None


class _File:
    """One file being checked: its name, and the first problem found raises with it."""

    def __init__(self, folder: Path, name: str):
        self.name = name
        path = folder / name
        if not path.is_file():
            raise RulesetError(name, f"file not found in {folder}")
        try:
            with path.open(encoding="utf-8") as stream:   # a YAML error then names the file and line
                self.data = yaml.load(stream, Loader=_NoDuplicateLoader)  # noqa: S506 (a safe loader)
        except yaml.YAMLError as exc:
            raise RulesetError(name, f"is not valid YAML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise RulesetError(name, f"is not UTF-8 text: {exc}") from None
        if not isinstance(self.data, dict):
            raise RulesetError(name, "must be a YAML mapping")

    def fail(self, key: str, reason: str, hint: Optional[str] = None) -> RulesetError:
        return RulesetError(self.name, f"{key}: {reason}", hint=hint)

    def section(self, key: str, kind: type, parent: Optional[Mapping[str, Any]] = None, where: str = "") -> Any:
        source = self.data if parent is None else parent
        name = f"{where}.{key}" if where else key
        if key not in source:
            raise self.fail(name, "missing")
        value = source[key]
        if not isinstance(value, kind) or not value:
            raise self.fail(name, f"must be a non-empty {'list' if kind is list else 'mapping'}")
        return value

    def only_keys(self, data: Mapping[str, Any], allowed: Iterable[str], where: str = "") -> None:
        for key in data:
            if key not in allowed:
                raise self.fail(f"{where}.{key}" if where else str(key), "unknown key", _hint(str(key), allowed))

    def text(self, value: Any, key: str, allowed: frozenset[str] = TEXT_KEYS) -> dict[str, str]:
        """``{en: ..., fr: ...}``, both non-empty strings."""
        if not isinstance(value, dict):
            raise self.fail(key, "must be a mapping {en: ..., fr: ...}")
        self.only_keys(value, allowed, key)
        out = {}
        for lang in LANGUAGES:
            if lang not in value:
                raise self.fail(key, f"the {_language(lang)} text is missing")
            out[lang] = self.label(value[lang], f"{key}.{lang}", _language(lang))
        return out

    def label(self, value: Any, key: str, language: str = "French") -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"the {language} text must be a string, not {type(value).__name__}")
        if not value.strip():
            raise self.fail(key, f"the {language} text is empty")
        return french_typography(value) if language == "French" else value


def _language(lang: str) -> str:
    return {"en": "English", "fr": "French"}[lang]


def _keyed(data: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in data.items()}


def load_form_texts(ruleset: Ruleset, fields: Optional[Mapping[str, Any]] = None) -> FormTexts:
    """Read and check the form's words of ``ruleset``'s folder against its case model and vocabulary.

    ``fields`` is the case model's field table (``triage.FIELDS`` unless given, for tests).
    Raises :class:`triage.RulesetError` on the first problem: the file, the key and the reason.
    """
    fields = FIELDS if fields is None else fields
    folder = Path(ruleset.path)
    unused: list[str] = []
    form = _File(folder, FORM_FILE)
    form.only_keys(form.data, ("groups", "fields", "choices", "words", "messages", "sources"))

    # fields: a label (and an optional help text) for every case field
    raw_fields = _keyed(form.section("fields", dict))
    labels: dict[str, dict[str, str]] = {}
    help_texts: dict[str, dict[str, str]] = {}
    conditions: dict[str, dict[str, str]] = {}
    for path, value in raw_fields.items():
        entry = form.text(value, f"fields.{path}", FIELD_KEYS)
        if isinstance(value, dict) and "help" in value:
            help_texts[path] = form.text(value["help"], f"fields.{path}.help")
        if isinstance(value, dict) and "condition" in value:
            conditions[path] = form.text(value["condition"], f"fields.{path}.condition")
        if path in fields:
            labels[path] = entry
        else:
            unused.append(f"{FORM_FILE}: fields.{path}: not a field of the case model"
                          + _suffix(_hint(path, [f for f in fields if f not in raw_fields])))
    for path in fields:
        if path not in labels:
            raise form.fail(f"fields.{path}", "missing: every case field needs a label",
                            _hint(path, [p for p in raw_fields if p not in fields]))
    help_texts = {p: h for p, h in help_texts.items() if p in fields}
    # A field "still to ask" that has no yes/no answer needs the answer that would raise the triage:
    # "if present" would read the wrong way round ("Walking now: if present: emergency").
    asked = unknown_fields()
    for path in asked:
        if path in fields and fields[path].kind != "tristate" and path not in conditions:
            raise form.fail(f"fields.{path}.condition", "missing: this field can be still to ask and is not a "
                            "yes/no finding; say which answer would raise the triage (\"if unable to walk\")")
    for path in conditions:
        if path not in fields or fields[path].kind == "tristate" or path not in asked:
            raise form.fail(f"fields.{path}.condition", "only a field that can be still to ask and is not a yes/no "
                            "finding takes a condition (a yes/no finding reads \"if present\")")

    # groups: every case field asked exactly once
    groups: list[FormGroup] = []
    seen_ids: set[str] = set()
    placed: dict[str, str] = {}
    for index, raw in enumerate(form.section("groups", list)):
        where = f"groups[{index}]"
        if not isinstance(raw, dict):
            raise form.fail(where, "must be a mapping with id, en, fr and fields")
        form.only_keys(raw, ("id", *LANGUAGES, "fields", "follow_ups"), where)
        gid = raw.get("id")
        if not isinstance(gid, str) or not gid:
            raise form.fail(f"{where}.id", "missing or not a string")
        where = f"groups.{gid}"
        if gid in seen_ids:
            raise form.fail(where, "two groups have this id")
        seen_ids.add(gid)
        label = form.text({k: raw.get(k) for k in LANGUAGES if k in raw}, where)
        members = form.section("fields", list, raw, where)
        shown = []
        for path in members:
            if not isinstance(path, str):
                raise form.fail(f"{where}.fields", f"{path!r} is not a field path")
            if path in placed:
                raise form.fail(f"{where}.fields", f"{path} is already asked in group {placed[path]}")
            placed[path] = gid
            if path in fields:
                shown.append(path)
            else:
                unused.append(f"{FORM_FILE}: {where}.fields: {path}: not a field of the case model")
        groups.append(FormGroup(gid, label, tuple(shown), _follow_ups(form, raw, where, tuple(shown), fields)))
    for path in fields:
        if path not in placed:
            raise form.fail("groups", f"{path} is asked in no group: add it to one")

    # choices: a label for every value of every choice field
    raw_choices = _keyed(form.section("choices", dict))
    needed_choices = {v for spec in fields.values() if getattr(spec, "kind", None) == "enum" for v in spec.values}
    choices = {}
    for key, value in raw_choices.items():
        choices[key] = form.text(value, f"choices.{key}")
        if key not in needed_choices:
            unused.append(f"{FORM_FILE}: choices.{key}: no case field offers this choice"
                          + _suffix(_hint(key, [c for c in needed_choices if c not in raw_choices])))
    for value in sorted(needed_choices):
        if value not in choices:
            raise form.fail(f"choices.{value}", "missing: every choice of the case model needs a label",
                            _hint(value, [c for c in choices if c not in needed_choices]))

    # words and messages the page uses
    raw_words = _keyed(form.section("words", dict))
    data = ruleset.data
    needed_words = {*PAGE_WORDS, *URGENCIES, *SEVERITIES, *SINS_CATEGORIES,
                    *(a.timing for a in data.actions.values()), *(f.severity for f in data.flags.values())}
    words = {key: form.text(value, f"words.{key}") for key, value in raw_words.items()}
    for key in sorted(needed_words):
        if key not in words:
            raise form.fail(f"words.{key}", "missing: the page uses this word",
                            _hint(key, [w for w in words if w not in needed_words]))
    unused += [f"{FORM_FILE}: words.{key}: the page does not use this word" for key in words if key not in needed_words]

    raw_messages = _keyed(form.section("messages", dict))
    messages = {}
    for key, value in raw_messages.items():
        messages[key] = form.text(value, f"messages.{key}")
        allowed = MESSAGES.get(key)
        if allowed is None:
            unused.append(f"{FORM_FILE}: messages.{key}: the form never shows this message"
                          + _suffix(_hint(key, [m for m in MESSAGES if m not in raw_messages])))
            continue
        for lang, template in messages[key].items():
            _check_placeholders(form, f"messages.{key}.{lang}", template, allowed)
    for key in MESSAGES:
        if key not in messages:
            raise form.fail(f"messages.{key}", "missing: the form shows this message",
                            _hint(key, [m for m in messages if m not in MESSAGES]))

    # sources: a readable citation, in both languages, for every part of every rule's source
    raw_sources = _keyed(form.section("sources", dict))
    sources = {key: form.text(value, f"sources.{key}") for key, value in raw_sources.items()}
    cited: set[str] = set()
    for rule in data.rules:
        for part in source_parts(rule.source or ""):
            cited.add(part)
            if part not in sources:
                raise form.fail(f"sources.{part}", f"missing: rule {rule.id} cites it; give a readable citation "
                                "in English and French", _hint(part, [s for s in sources if s not in cited]))
    unused += [f"{FORM_FILE}: sources.{key}: no rule cites it" for key in sources if key not in cited]

    # labels.fr.yaml: a French label for every action and flag, a French headline for every headline
    fr = _File(folder, LABELS_FR_FILE)
    fr.only_keys(fr.data, ("actions", "flags", "headlines", "titles", "reasons", "scans"))
    scan_words, orders = _french_scans(fr, data.scans, unused)
    actions = _french_labels(fr, "actions", {a: d.label for a, d in data.actions.items()}, unused)
    flags = _french_labels(fr, "flags", {f: d.label for f, d in data.flags.items()}, unused)
    raw_headlines = fr.section("headlines", dict)
    fr.only_keys(raw_headlines, ("default", "rules", "texts"), "headlines")
    defaults = fr.section("default", dict, raw_headlines, "headlines")
    headlines: dict[str, dict[str, str]] = {}
    headline_keys: dict[str, tuple[str, str, Optional[str]]] = {}   # English headline -> French key, file, rule
    for urgency, english in data.headlines.items():
        if urgency not in defaults:
            raise fr.fail(f"headlines.default.{urgency}", "missing: a French default headline is needed")
        headlines[english] = {"en": english, "fr": fr.label(defaults[urgency], f"headlines.default.{urgency}")}
        headline_keys[english] = (f"headlines.default.{urgency}", "ruleset.yaml", None)
    for urgency in defaults:
        if urgency not in data.headlines:
            unused.append(f"{LABELS_FR_FILE}: headlines.default.{urgency}: not an urgency of the ruleset")
    # Every headline of every rule (its single headline, or each variant of its list), by the English
    # text (``headlines.texts``): when an English headline changes, its French one goes missing and
    # the check says so. ``headlines.rules`` (French by rule id, for the rule's unconditional headline)
    # is still read, for rulesets written before headline variants; the text wins when both are given.
    for section in ("rules", "texts"):
        if not isinstance(raw_headlines.get(section) or {}, dict):
            raise fr.fail(f"headlines.{section}", "must be a mapping of "
                          + ("rule id" if section == "rules" else "English headline") + " to French headline")
    by_rule = _keyed(raw_headlines.get("rules") or {})
    by_text = _keyed(raw_headlines.get("texts") or {})
    # A headline naming a scan is given once, by the rule file's text ("...: {scan}, ..."): each route's
    # variant (the English text the rule shows) gets it with that route's French scan words.
    from_template: dict[str, tuple[str, str]] = {}   # English variant -> (its key, French)
    for key, french in by_text.items():
        if "{scan}" in key and isinstance(french, str):
            if "{scan}" not in french:
                raise fr.fail(f"headlines.texts.{key}", "the French headline must say where the scan's words go "
                                                        "('{scan}'), as the English one does")
            for english_words, french_words in scan_words:
                from_template.setdefault(key.replace("{scan}", english_words),
                                         (key, french.replace("{scan}", french_words)))
    used_templates: set[str] = set()
    rules = {r.id: r for r in data.rules}
    missing: list[tuple[str, str]] = []   # (rule id, English headline): all of them named at once
    for rule in data.rules:
        for variant in rule.headlines:
            if variant.text in headlines or (rule.id, variant.text) in missing:
                continue
            if variant.text in by_text:
                key, french = f"headlines.texts.{variant.text}", by_text[variant.text]
            elif variant.text in from_template:
                template, french = from_template[variant.text]
                key = f"headlines.texts.{template}"
                used_templates.add(template)
            elif variant.text == rule.headline and rule.id in by_rule:
                key, french = f"headlines.rules.{rule.id}", by_rule[rule.id]
            else:   # named as the rule file writes it: a scan headline once, with its `{scan}`
                written = next((variant.text.replace(words, "{scan}") for words, _ in scan_words
                                if words in variant.text), variant.text)
                if (rule.id, written) not in missing:
                    missing.append((rule.id, written))
                continue
            headlines[variant.text] = {"en": variant.text, "fr": fr.label(french, key)}
            headline_keys[variant.text] = (key, rule.file, rule.id)
    if missing:
        (first_rule, first_text), others = missing[0], missing[1:]
        more = (f"; {len(others)} more without a French one: " + "; ".join(f"'{t}' ({r})" for r, t in others)
                if others else "")
        raise fr.fail(f"headlines.texts.{first_text}",
                      f"missing: rule {first_rule} has this headline without a French one "
                      f"(give it under headlines.texts, keyed by the English text){more}",
                      _hint(first_text, [t for t in by_text if t not in headlines and t not in used_templates]))
    for english, (french_key, rule_file, headline_rule) in headline_keys.items():   # each fits a card's summary
        for lang, headline_text in headlines[english].items():
            if len(headline_text) > HEADLINE_MAX:
                reason = (f"the headline is {len(headline_text)} characters, more than {HEADLINE_MAX}: a CDS Hooks card's "
                          f"summary is under 140 characters and would lose its end (what to do); say it shorter")
                if lang == "fr":
                    raise fr.fail(french_key, f"the French one of '{english}': {reason}")
                raise RulesetError(rule_file, f"headline '{english}': {reason}", headline_rule)
    unused += [f"{LABELS_FR_FILE}: headlines.texts.{text}: no rule has this headline"
               + _suffix(_hint(text, [v.text for r in data.rules for v in r.headlines if v.text not in by_text]))
               for text in by_text if text not in headlines and text not in used_templates]
    for rule_id, value in by_rule.items():
        fr.label(value, f"headlines.rules.{rule_id}")
        if rule_id not in rules:
            unused.append(f"{LABELS_FR_FILE}: headlines.rules.{rule_id}: no rule has this id"
                          + _suffix(_hint(rule_id, [r for r, rule in rules.items()
                                                    if rule.headline and r not in by_rule])))
        elif not rules[rule_id].headline:
            unused.append(f"{LABELS_FR_FILE}: headlines.rules.{rule_id}: this rule has no headline")
        elif rules[rule_id].headline in by_text:
            unused.append(f"{LABELS_FR_FILE}: headlines.rules.{rule_id}: headlines.texts gives this headline")

    # titles: a French title for every rule
    raw_titles = _keyed(fr.section("titles", dict))
    titles: dict[str, dict[str, str]] = {}
    for rule in data.rules:
        key = f"titles.{rule.id}"
        if rule.id not in raw_titles:
            raise fr.fail(key, f"missing: rule {rule.id} ({rule.title!r}) needs a French title",
                          _hint(rule.id, [r for r in raw_titles if r not in rules]))
        titles[rule.id] = {"en": rule.title, "fr": fr.label(raw_titles[rule.id], key)}
    for rule_id, value in raw_titles.items():
        fr.label(value, f"titles.{rule_id}")
        if rule_id not in rules:
            unused.append(f"{LABELS_FR_FILE}: titles.{rule_id}: no rule has this id"
                          + _suffix(_hint(rule_id, [r for r in rules if r not in raw_titles])))

    # reasons: why a rule holds an action back, and what would release it (the result's `withheld`)
    raw_reasons = _keyed(fr.data.get("reasons") or {})
    reasons: dict[str, dict[str, str]] = {}
    for rule in data.rules:
        texts = [rule.reason, rule.release] + [t for o in rule.outputs if o.kind == "withhold" for t in (o.reason, o.release)]
        for text in texts:
            if not text or text in reasons:
                continue
            key = f"reasons.{text}"
            if text not in raw_reasons:
                raise fr.fail(key, f"missing: rule {rule.id} holds an action back with this reason; give it in French")
            reasons[text] = {"en": text, "fr": fr.label(raw_reasons[text], key)}
    unused += [f"{LABELS_FR_FILE}: reasons.{text}: no rule gives this reason" for text in raw_reasons if text not in reasons]

    return FormTexts(tuple(groups), labels, help_texts, choices, words, messages, actions, flags, headlines,
                 titles, sources, tuple(unused), reasons, orders, conditions)


def _french_scans(fr: _File, table: Optional[ScanTable], unused: list[str]
                  ) -> tuple[list[tuple[str, str]], dict[str, dict[str, str]]]:
    """``labels.fr.yaml``'s ``scans``: the French words of every route and scan of the vocabulary's table.

    Returns the scans' headline words, English and French, for every scan and route, and every scan
    action's draft order ``{en, fr}``."""
    raw = fr.data.get("scans")
    if table is None:
        if raw is not None:
            unused.append(f"{LABELS_FR_FILE}: scans: the vocabulary has no scans table")
        return [], {}
    if raw is None:
        raise fr.fail("scans", "missing: the vocabulary's scans table needs its French words "
                               "(routes: word and order; entries: reach and words)")
    if not isinstance(raw, dict):
        raise fr.fail("scans", "must be a mapping with `routes` and `entries`")
    fr.only_keys(raw, ("routes", "entries"), "scans")
    routes = _keyed(fr.section("routes", dict, raw, "scans"))
    entries = _keyed(fr.section("entries", dict, raw, "scans"))
    french_routes: dict[str, dict[str, str]] = {}
    for route_id in table.routes:
        french_routes[route_id] = _french_entry(fr, routes, route_id, f"scans.routes.{route_id}", ("word", "order"),
                                                "route", "{reach}")
    french_scans: dict[str, dict[str, str]] = {}
    for scan in table.entries:
        french_scans[scan.id] = _french_entry(fr, entries, scan.id, f"scans.entries.{scan.id}", ("reach", "words"),
                                              "scan", "{route}")
    unused += [f"{LABELS_FR_FILE}: scans.routes.{r}: not a route of the vocabulary's scans table"
               + _suffix(_hint(r, [x for x in table.routes if x not in routes])) for r in routes if r not in table.routes]
    known = table.by_id()
    unused += [f"{LABELS_FR_FILE}: scans.entries.{e}: not a scan of the vocabulary's scans table"
               + _suffix(_hint(e, [x for x in known if x not in entries])) for e in entries if e not in known]
    words: list[tuple[str, str]] = []
    orders: dict[str, dict[str, str]] = {}
    english_orders = table.orders()
    for scan in table.entries:
        for route_id, route in table.routes.items():
            words.append((scan.words.replace("{route}", route.word),
                          french_scans[scan.id]["words"].replace("{route}", french_routes[route_id]["word"])))
            action = table.action(scan.id, route_id)
            orders[action] = {"en": english_orders[action],
                              "fr": french_routes[route_id]["order"].replace("{reach}", french_scans[scan.id]["reach"])}
    return words, orders


def _french_entry(fr: _File, raw: Mapping[str, Any], key: str, where: str, keys: tuple[str, str], kind: str,
                  placeholder: str) -> dict[str, str]:
    if key not in raw:
        raise fr.fail(where, f"missing: every {kind} of the vocabulary's scans table needs its French words "
                             f"({' and '.join(keys)})", _hint(key, list(raw)))
    value = raw[key]
    if not isinstance(value, dict):
        raise fr.fail(where, f"must be a mapping {{{keys[0]}: ..., {keys[1]}: ...}}")
    fr.only_keys(value, keys, where)
    out = {}
    for name in keys:
        if name not in value:
            raise fr.fail(f"{where}.{name}", "missing")
        out[name] = fr.label(value[name], f"{where}.{name}")
    template = keys[1]
    if placeholder not in out[template]:
        raise fr.fail(f"{where}.{template}", f"must say where the {'reach' if kind == 'route' else 'route'} goes "
                                             f"('{placeholder}'), as the vocabulary's does")
    return out


def _follow_ups(form: _File, raw: Mapping[str, Any], where: str, shown: tuple[str, ...],
                fields: Mapping[str, Any]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The group's fields in the order shown: each gate followed by its follow-up questions."""
    table = raw.get("follow_ups") or {}
    if not isinstance(table, dict):
        raise form.fail(f"{where}.follow_ups", "must be a mapping: yes/no question -> list of follow-up questions")
    follow: dict[str, tuple[str, ...]] = {}
    taken: set[str] = set()
    for gate, members in _keyed(table).items():
        key = f"{where}.follow_ups.{gate}"
        if gate not in shown:
            raise form.fail(key, "this question is not asked in the group", _hint(gate, shown))
        if getattr(fields[gate], "kind", None) != "tristate":
            raise form.fail(key, "only a yes/no question can open follow-up questions")
        if not isinstance(members, list) or not members:
            raise form.fail(key, "must be a non-empty list of questions of the group")
        for path in members:
            if path not in shown or path == gate:
                raise form.fail(key, f"{path!r} is not another question of the group", _hint(str(path), shown))
            if path in taken or path in follow:
                raise form.fail(key, f"{path} is already a follow-up or a gate")
            taken.add(path)
        follow[gate] = tuple(members)
    for gate in follow:
        if gate in taken:
            raise form.fail(f"{where}.follow_ups.{gate}", "a follow-up question cannot open follow-ups of its own")
    return tuple((path, follow.get(path, ())) for path in shown if path not in taken)


def _french_labels(fr: _File, section: str, english: Mapping[str, str], unused: list[str]) -> dict[str, dict[str, str]]:
    raw = _keyed(fr.section(section, dict))
    out = {}
    for key, label in english.items():
        if key not in raw:
            raise fr.fail(f"{section}.{key}", "missing: every id of the vocabulary needs a French label",
                          _hint(key, [k for k in raw if k not in english]))
        out[key] = {"en": label, "fr": fr.label(raw[key], f"{section}.{key}")}
    for key, value in raw.items():
        fr.label(value, f"{section}.{key}")
        if key not in english:
            unused.append(f"{LABELS_FR_FILE}: {section}.{key}: not an id of the vocabulary"
                          + _suffix(_hint(key, [k for k in english if k not in raw])))
    return out


def _check_placeholders(file: _File, key: str, template: str, allowed: frozenset[str]) -> None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise file.fail(key, f"is not a valid message template: {exc}") from None
    for name in names:
        if name not in allowed:
            raise file.fail(key, f"unknown placeholder {{{name}}}" + (
                f": this message may use {', '.join('{' + a + '}' for a in sorted(allowed))}" if allowed
                else ": this message takes none"), _hint(name, allowed))


def _suffix(hint: Optional[str]) -> str:
    return f" ({hint})" if hint else ""


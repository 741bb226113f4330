"""The CDS Hooks 2.0 card: built from the result, with draft orders, override reasons and links.

- ``detail``: the actions with timing, the flags, the unknowns, what was mapped from which resource
  ("From the record": each :class:`~..fhir.map.Mapped` entry with the form's label and choice words, then
  the record's evidence: resource, display, code system and code, its own value, and why), and where each
  part of the record came from (sent, fetched, not available).
- ``suggestions``: for each action the result holds that can be ordered, FHIR R4 ``ServiceRequest`` /
  ``MedicationRequest`` drafts (status ``draft``, intent ``proposal``, the patient as subject, text
  always, a code only where we are sure of one). Nothing the result does not hold is ever suggested
  (no dexamethasone when the rules withheld it). The MRI, when there is one, is the recommended one.
- ``overrideReasons``: Codings of this project's code system ``urn:mscc-triage:override-reason``;
  feedback records the code against the card's uuid, no patient data.
- ``links``: the rules and their sources, and the triage form (``/`` and ``/fr/``) with ``?from=<token>``:
  a random token naming what the record said, kept server-side for 30 minutes (``service.PREFILL_SECONDS``);
  the link carries no finding, and once expired it opens an empty form.

A record read for the right patient but holding no finding (nothing mapped but the age) never gets a
reassuring info card: :func:`thin_card` is a warning, "Not enough in the record to triage: open the
form", with the form's link and the questions to ask first, in the form's own labels.

The card speaks English or French (``MSCC_CDS_CARD_LANGUAGE``): :class:`CardWords` holds the words of
one language, taken from the form's files (``form.yaml``: field labels, timings, urgencies, severities,
citations; ``labels.fr.yaml``: actions, flags, headlines, rule titles, reasons), and the card's own
phrases and order texts from the tables below. Codes (override reasons, SNOMED, RxNorm) never change.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import triage
from triage import HEADLINE_MAX, FormTexts, french_typography, source_parts

from ..fhir.map import Evidence, Mapped
from ..fhir.record import TEMPLATES, Record

INDICATOR = {"emergency": "critical", "urgent": "warning", "routine": "info"}
TIMING_WORDS = {"immediately": "Now", "within_4h": "Within 4 hours", "within_24h": "Within 24 hours",
                "within_48h": "Within 48 hours", "within_1_week": "Within 1 week", "routine": "Routine"}
PRIORITY = {"immediately": "stat", "within_4h": "stat", "within_24h": "urgent", "within_48h": "urgent",
            "within_1_week": "routine", "routine": "routine"}
OVERRIDE_SYSTEM = "urn:mscc-triage:override-reason"
OVERRIDE_REASONS = [
    {"system": OVERRIDE_SYSTEM, "code": "already-done", "display": "Already done or in progress"},
    {"system": OVERRIDE_SYSTEM, "code": "discussed-with-coordinator", "display": "Discussed with the MSCC coordinator"},
    {"system": OVERRIDE_SYSTEM, "code": "patient-declined", "display": "Patient declined"},
    {"system": OVERRIDE_SYSTEM, "code": "not-indicated", "display": "Not clinically indicated"},
    {"system": OVERRIDE_SYSTEM, "code": "record-incorrect", "display": "The record is wrong or out of date"},
]
OVERRIDE_CODES = frozenset(r["code"] for r in OVERRIDE_REASONS)
OVERRIDE_DISPLAY_FR = {
    "already-done": "Déjà fait ou en cours",
    "discussed-with-coordinator": "Discuté avec le coordinateur CMM",
    "patient-declined": "Refusé par le patient",
    "not-indicated": "Pas d'indication clinique",
    "record-incorrect": "Le dossier est faux ou périmé",
}
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
REFERRAL = {"coding": [{"system": SNOMED, "code": "3457005", "display": "Patient referral"}]}

# action id -> (resource type, what is ordered, its code or None, category or None).
# Grouped: actions in one group become one suggestion (dexamethasone with its gastroprotection).
# The scans are not here: every action of the vocabulary's scans table is orderable, a ServiceRequest
# named by the table (``Ruleset.scan_orders``; in French, the form's texts ``orders``), and recommended.
ORDERABLE: dict[str, tuple[str, str, Optional[dict[str, Any]], Optional[dict[str, Any]]]] = {
    "dexamethasone_16mg": ("MedicationRequest", "Dexamethasone 16 mg (oral or IV), then daily",
                           {"coding": [{"system": RXNORM, "code": "3264", "display": "dexamethasone"}]}, None),
    "gastroprotection_ppi": ("MedicationRequest", "Proton pump inhibitor while on steroids", None, None),
    "baseline_bloods": ("ServiceRequest", "Full blood count, renal function, calcium, glucose", None, None),
    "blood_cultures_and_infection_markers": ("ServiceRequest", "Blood cultures, full blood count and CRP", None, None),
    "myeloma_screen_bloods": ("ServiceRequest", "Myeloma screen: full blood count, calcium, ESR or plasma viscosity, "
                              "serum protein electrophoresis", None, None),
    "vitamin_d_assay": ("ServiceRequest", "25-OH vitamin D", None, None),
    "ecg": ("ServiceRequest", "12-lead ECG", None, None),
    "iv_rehydration": ("MedicationRequest", "Sodium chloride 0.9% intravenous infusion (rehydration)", None, None),
    "iv_bisphosphonate_for_hypercalcaemia": ("MedicationRequest", "Intravenous bisphosphonate for hypercalcaemia "
                                             "(choice and dose by renal function)", None, None),
    "iv_calcium_replacement": ("MedicationRequest", "Intravenous calcium, with cardiac monitoring", None, None),
    "urgent_spinal_surgical_opinion": ("ServiceRequest", "Referral: urgent spinal surgical opinion", None, REFERRAL),
    "spinal_surgical_opinion_now": ("ServiceRequest", "Referral: spinal surgical opinion now", None, REFERRAL),
    "neurology_review_now": ("ServiceRequest", "Referral: neurology review now", None, REFERRAL),
    "contact_paediatric_oncology_now": ("ServiceRequest", "Referral: paediatric oncology now", None, REFERRAL),
    "radiotherapy_referral": ("ServiceRequest", "Referral: clinical oncology for radiotherapy", None, REFERRAL),
    "neurology_review": ("ServiceRequest", "Referral: neurology review", None, REFERRAL),
    "contact_mscc_coordinator_within_24h": ("ServiceRequest", "Referral: MSCC coordinator", None, REFERRAL),
}
# What is ordered, in French (the same keys as ORDERABLE; a test keeps them complete).
ORDERABLE_FR: dict[str, str] = {
    "dexamethasone_16mg": "Dexaméthasone 16 mg (per os ou IV), puis chaque jour",
    "gastroprotection_ppi": "Inhibiteur de la pompe à protons pendant la corticothérapie",
    "baseline_bloods": "NFS, fonction rénale, calcémie, glycémie",
    "blood_cultures_and_infection_markers": "Hémocultures, NFS et CRP",
    "myeloma_screen_bloods": "Recherche de myélome : NFS, calcémie, VS ou viscosité plasmatique, "
                             "électrophorèse des protéines sériques",
    "vitamin_d_assay": "25-OH vitamine D",
    "ecg": "ECG 12 dérivations",
    "iv_rehydration": "Chlorure de sodium à 0,9 % en perfusion intraveineuse (réhydratation)",
    "iv_bisphosphonate_for_hypercalcaemia": "Bisphosphonate intraveineux contre l'hypercalcémie "
                                            "(molécule et dose selon la fonction rénale)",
    "iv_calcium_replacement": "Calcium intraveineux, sous surveillance cardiaque",
    "urgent_spinal_surgical_opinion": "Demande d'avis : chirurgien du rachis en urgence",
    "spinal_surgical_opinion_now": "Demande d'avis : chirurgien du rachis maintenant",
    "neurology_review_now": "Demande d'avis : neurologue maintenant",
    "contact_paediatric_oncology_now": "Demande d'avis : oncologie pédiatrique maintenant",
    "radiotherapy_referral": "Demande d'avis : oncologue radiothérapeute pour une radiothérapie",
    "neurology_review": "Demande d'avis : neurologue",
    "contact_mscc_coordinator_within_24h": "Demande d'avis : coordinateur CMM",
}
GROUPS = [("dexamethasone_16mg", "gastroprotection_ppi")]
# Held with the dexamethasone: named in the card only through it.
COMPANIONS = frozenset({"gastroprotection_ppi", "capillary_glucose_monitoring"})


Cite = Callable[[str], str]


def _plain_cite(source: str) -> str:
    return source


# The card's own phrases (the rest comes from the form's files): key -> (English, French).
PHRASES: dict[str, tuple[str, str]] = {
    "actions": ("Actions", "Actions"),
    "flags": ("Flags", "Points d'attention"),
    "withheld": ("Not given, and why", "Non proposé, et pourquoi"),
    "unless": ("unless", "sauf si"),
    "not_yet_assessed": ("**Not yet assessed** (each would raise the urgency, add a critical flag or ask a scan)",
                         "**Non évalué** (chaque élément pourrait relever l'urgence, ajouter un point critique ou "
                         "demander une imagerie)"),
    "if_present": ("if present", "si oui"),
    "so_far_summary": ("So far: {headline}", "Pour l'instant : {headline}"),
    "so_far_line": ("so far: a finding not in the record could make it {level} (below)",
                    "pour l'instant : un élément absent du dossier pourrait le faire passer en {level} (ci-dessous)"),
    "adds": ("adds", "ajoute"),
    "would_ask": ("would ask", "demanderait"),
    "from_record": ("From the record", "D'après le dossier"),
    "nothing_mapped": ("nothing mapped", "rien de lisible"),
    "record": ("Record", "Dossier"),
    "sources": ("Sources", "Sources"),
    "rules_applied": ("Rules that applied (ruleset {name} {version})", "Règles appliquées (jeu de règles {name} {version})"),
    "source_label": ("mscc-triage ruleset {name} {version}", "Jeu de règles mscc-triage {name} {version}"),
    "rules_link": ("Rules and sources", "Règles et sources"),
    "form_link": ("Open the MSCC triage form (answer what the record does not say)",
                  "Ouvrir le formulaire de triage CMM (répondre à ce que le dossier ne dit pas)"),
    "other_form_link": ("Formulaire de triage CMM (français)", "Formulaire de triage CMM en anglais"),
    "with": ("with", "avec"),
    "thin_summary": ("Not enough in the record to triage: open the form",
                     "Pas assez d'éléments dans le dossier pour trier : ouvrir le formulaire"),
    "thin_body": ("**Not enough in the record to triage**: the record was read for this patient, but it holds no "
                  "cancer, metastasis, symptom, lab or medication this service can read. This is not a \"no MSCC "
                  "pathway\" answer: open the MSCC triage form and ask the questions below.",
                  "**Pas assez d'éléments dans le dossier pour trier** : le dossier de ce patient a été lu, mais il ne "
                  "contient aucun cancer, métastase, symptôme, résultat biologique ni traitement que ce service sache "
                  "lire. Ce n'est pas une réponse « pas de parcours CMM » : ouvrez le formulaire de triage CMM et "
                  "posez les questions ci-dessous."),
    "no_symptom_summary": ("No symptom in the record: open the form to triage",
                           "Aucun symptôme dans le dossier : ouvrir le formulaire pour trier"),
    "no_symptom_body": ("**No symptom in the record**: the record was read for this patient, but it says nothing "
                        "about back pain, limb weakness, sensory change, bladder or bowel change or sciatica. This is "
                        "not a \"no MSCC pathway\" answer: open the MSCC triage form and ask the questions below.",
                        "**Aucun symptôme dans le dossier** : le dossier de ce patient a été lu, mais il ne dit rien "
                        "d'une douleur rachidienne, d'un déficit moteur, d'un trouble sensitif, d'un trouble "
                        "sphinctérien ni d'une sciatique. Ce n'est pas une réponse « pas de parcours CMM » : ouvrez le "
                        "formulaire de triage CMM et posez les questions ci-dessous."),
    "ask_first": ("Ask first", "À demander d'abord"),
    "age": ("age {age} years", "âge {age} ans"),
    "cancer": ("cancer", "cancer"),
    "left_unknown": ("left unknown", "laissé inconnu"),
    "not_available": ("not available", "non disponible"),
    "technical": ("{reason}", "détail technique : {reason}"),
    "true": ("true", "oui"),
    "false": ("false", "non"),
    "present": ("present", "oui"),     # "Faiblesse ... : oui": no agreement to get wrong
    "absent": ("absent", "non"),
}
# The record's resources as the card names them (api/fhir/map.py's Evidence.resource): (English, French).
RESOURCE_WORDS: dict[str, tuple[str, str]] = {
    "Patient": ("date of birth", "date de naissance"),
    "Condition": ("condition", "problème"),
    "Observation": ("observation", "observation"),
    "MedicationRequest": ("prescription", "prescription"),
    "MedicationStatement": ("medication statement", "traitement déclaré"),
    "Procedure": ("procedure", "acte"),
}
# Code systems by their readable names (the code map's system families).
SYSTEM_NAMES = {"snomed": "SNOMED CT", "icd10": "ICD-10", "loinc": "LOINC", "rxnorm": "RxNorm", "atc": "ATC",
                "hl7yesno": "HL7 v2 yes/no"}
# Why a finding was set or left unknown (api/fhir/map.py's WHY keys), in the card's words: (English, French).
WHY_WORDS: dict[str, tuple[str, str]] = {
    "unit_not_converted": ("unit “{unit}” not converted", "unité « {unit} » non convertie"),
    "no_usable_value": ("no usable value", "pas de valeur utilisable"),
    "outside_limits": ("{number} is outside the limits the triage accepts",
                       "{number} est hors des limites admises par le triage"),
    "units_disagree": ("unit “{unit}” and code “{code}” disagree", "unité « {unit} » et code « {code} » en désaccord"),
    "birth_date_unusable": ("no age of 0 to 120 years can be read from it",
                            "aucun âge de 0 à 120 ans ne peut en être déduit"),
    "conflicting_values": ("{numbers} recorded at the same time", "{numbers} enregistrés au même moment"),
    "no_start": ("no start date, so neither this episode nor long-term",
                 "pas de date de début : ni cet épisode ni au long cours"),
    "future_start": ("its start date is in the future", "sa date de début est dans le futur"),
    "long_term": ("started {ago} days ago, more than {days}: long-term",
                  "débuté il y a {ago} jours, plus de {days} : au long cours"),
    "renewal": ("a renewal: when the steroid itself began is not known",
                "un renouvellement : le début de la corticothérapie n'est pas connu"),
    "this_episode": ("started {ago} days ago, within {days}: this episode",
                     "débuté il y a {ago} jours, dans les {days} jours : cet épisode"),
    "dual_antiplatelet": ("dual antiplatelet therapy", "double antiagrégation plaquettaire"),
    "one_antiplatelet": ("one antiplatelet only: not dual antiplatelet therapy",
                         "un seul antiagrégant plaquettaire : pas de double antiagrégation"),
    "fever": ("temperature {celsius} °C within {hours} hours", "température {celsius} °C dans les {hours} heures"),
    "procedure": ("{status}, within {days} days", "{status}, dans les {days} jours"),
    "absent_too_old": ("recorded absent on {day}, more than {hours} hours ago: not taken as absent now",
                       "notée absente le {day}, il y a plus de {hours} heures : pas tenue pour absente maintenant"),
    "absent_undated": ("recorded absent without a date: not taken as absent now",
                       "notée absente sans date : pas tenue pour absente maintenant"),
    "absent_not_final": ("recorded absent with status “{status}”: not taken as absent until final",
                         "notée absente au statut « {status} » : pas tenue pour absente avant d'être finale"),
    "several_cancers": ("several cancers in the record: this one is taken (a suspected or past lymphoma or "
                        "leukaemia first, as steroids can hide it; else the most current)",
                        "plusieurs cancers au dossier : celui-ci est retenu (d'abord un lymphome ou une leucémie "
                        "suspectés ou antérieurs, que les corticoïdes peuvent masquer ; sinon le plus actuel)"),
}
# A procedure's FHIR status, in words.
STATUS_WORDS = {"completed": ("done", "réalisé"), "in-progress": ("in progress", "en cours")}
# The code map's own reasons (fhir/codemap.yaml, ``leave_unknown``), in French; English is the map's text.
NOTES_FR = {"a heparin or fondaparinux: prophylactic or therapeutic dose cannot be told from the code":
            "héparine ou fondaparinux : dose préventive ou curative impossible à déduire du code"}
# Where each part of the record came from (api/fhir/record.py), and the prefetch keys, in French.
ORIGINS_FR = {"sent": "envoyé", "sent empty (null)": "envoyé vide (null)", "sent under another key":
              "envoyé sous une autre clé", "fetched from the FHIR server": "lu sur le serveur FHIR"}
TEMPLATE_NAMES_FR = {"patient": "patient", "conditions": "problèmes et diagnostics", "observations": "observations",
                     "medicationRequests": "prescriptions", "medicationStatements": "traitements déclarés",
                     "procedures": "actes"}
LANGUAGES = ("en", "fr")


@dataclass(frozen=True)
class CardWords:
    """Everything a card says, in one language (``en`` or ``fr``).

    ``labels``: case field -> the form's label; ``cite``: a rule's source -> its readable citations;
    ``texts``: the form's words (required for French: actions, flags, headlines, titles, reasons,
    timings, urgencies, severities, choices). English without ``texts`` uses the ruleset's own labels."""

    lang: str = "en"
    labels: Mapping[str, str] = field(default_factory=dict)
    cite: Cite = _plain_cite
    texts: Optional[FormTexts] = None

    @classmethod
    def of(cls, texts: FormTexts, lang: str) -> "CardWords":
        """The words of ``lang`` from the form's checked files."""
        if lang not in LANGUAGES:
            raise ValueError(f"card language must be one of {', '.join(LANGUAGES)}, not {lang!r}")
        labels = {path: text[lang] for path, text in texts.fields.items()}
        return cls(lang, labels, lambda source: "; ".join(texts.citations(source, lang)), texts)

    @property
    def fr(self) -> bool:
        return self.lang == "fr"

    def phrase(self, key: str, **values: Any) -> str:
        return PHRASES[key][1 if self.fr else 0].format(**values)

    def condition(self, path: str) -> str:
        """"if present", or for a field with no yes/no answer the answer that would raise the triage."""
        found = self.texts.conditions.get(path) if self.texts is not None else None
        return found[self.lang] if found else self.phrase("if_present")

    def _form(self, section: str, key: str, english: str) -> str:
        if not self.fr or self.texts is None:
            return english
        table: Mapping[str, Mapping[str, str]] = getattr(self.texts, section)
        return table.get(key, {}).get("fr", english)

    def timing(self, timing: str) -> str:
        return self._form("words", timing, TIMING_WORDS[timing])

    def urgency(self, urgency: str) -> str:
        """The urgency as a heading word: EMERGENCY, URGENCE IMMÉDIATE."""
        return self._form("words", urgency, urgency.upper())

    def urgency_in_text(self, urgency: str) -> str:
        return self.urgency(urgency).lower()

    def severity(self, severity: str) -> str:
        return self._form("words", severity, severity)

    def action(self, action_id: str, english: str) -> str:
        return self._form("actions", action_id, english)

    def flag(self, flag_id: str, english: str) -> str:
        return self._form("flags", flag_id, english)

    def headline(self, english: str) -> str:
        return self._form("headlines", english, english)

    def title(self, rule_id: str, english: str) -> str:
        return self._form("titles", rule_id, english)

    def reason(self, english: str) -> str:
        return self._form("reasons", english, english)

    def choice(self, value: str) -> str:
        return self._form("choices", value, value)

    def form_word(self, section: str, key: str, fallback: str) -> str:
        """A word of the form's files in the card's language (English too): ``choices``, ``words``."""
        if self.texts is None:
            return fallback
        table: Mapping[str, Mapping[str, str]] = getattr(self.texts, section)
        return table.get(key, {}).get(self.lang, fallback)

    def number(self, text: str) -> str:
        """A decimal number as the language writes it (2,61 in French)."""
        return re.sub(r"(?<=\d)\.(?=\d)", ",", text) if self.fr else text

    def disclaimer(self, english: str) -> str:
        return self._form("words", "disclaimer", english)

    def ordered(self, action_id: str, ruleset: triage.Ruleset) -> str:
        """What a draft order names, in this language: a scan from the scans table, else ``ORDERABLE``."""
        if action_id in ruleset.scan_orders:
            if self.fr:
                assert self.texts is not None   # French words come with the form's texts
                return self.texts.orders[action_id]["fr"]
            return ruleset.scan_orders[action_id]
        return ORDERABLE_FR[action_id] if self.fr else ORDERABLE[action_id][1]

    def override_reasons(self) -> list[dict[str, str]]:
        if not self.fr:
            return OVERRIDE_REASONS
        return [dict(r, display=OVERRIDE_DISPLAY_FR[r["code"]]) for r in OVERRIDE_REASONS]

    def typography(self, text: str) -> str:
        """French text gets its spaces: a no-break space before ``: ; ! ? %`` and inside « » (also where the
        card's lines are joined with an English colon or semicolon, "**URGENT**: ..."); a URL or a time is
        left as it is (no space follows its colon)."""
        if not self.fr:
            return text
        return french_typography(re.sub(r"(?<=[^\s:;]):(?=\s)|(?<=[^\s:;]);(?=\s)", lambda m: " " + m.group(0), text))


ENGLISH = CardWords()


def _words(words: Optional[CardWords], labels: Optional[Mapping[str, str]], cite: Optional[Cite]) -> CardWords:
    if words is not None:
        return words
    return CardWords("en", labels or {}, cite or _plain_cite)


def orderable(action_id: str, ruleset: triage.Ruleset) -> bool:
    """Whether a draft order is proposed for this action: a scan of the scans table, or ``ORDERABLE``."""
    return action_id in ORDERABLE or action_id in ruleset.scan_orders


def _draft(action: triage.ActionItem, patient_id: Optional[str], ruleset: triage.Ruleset,
           words: CardWords = ENGLISH) -> dict[str, Any]:
    kind, _, code, category = (ORDERABLE[action.id] if action.id in ORDERABLE
                               else ("ServiceRequest", ruleset.scan_orders[action.id], None, None))
    what = words.typography(words.ordered(action.id, ruleset))
    label = words.action(action.id, action.label)
    source = "; ".join(_citations(action, ruleset, words))
    label, source = words.typography(label), words.typography(source)
    text = words.typography(f"{what}: {words.timing(action.timing).lower()}")
    concept = dict(code or {}, text=what)
    resource: dict[str, Any] = {"resourceType": kind, "status": "draft", "intent": "proposal",
                                "priority": PRIORITY[action.timing]}
    if patient_id:
        resource["subject"] = {"reference": f"Patient/{patient_id}"}
    if kind == "ServiceRequest":
        resource["code"] = concept
        if category:
            resource["category"] = [category]
        resource["note"] = [{"text": f"{label} ({source})"}]
    else:
        resource["medicationCodeableConcept"] = concept
        dosage: dict[str, Any] = {"text": label}
        if action.id == "dexamethasone_16mg":
            dosage["doseAndRate"] = [{"doseQuantity": {"value": 16, "unit": "mg", "system": UCUM, "code": "mg"}}]
        resource["dosageInstruction"] = [dosage]
        resource["note"] = [{"text": source}]
    return {"type": "create", "description": text, "resource": resource}


def suggestions_for(result: triage.Result, patient_id: Optional[str], ruleset: triage.Ruleset,
                    words: CardWords = ENGLISH) -> list[dict[str, Any]]:
    """Draft orders for the orderable actions the result holds, grouped, the scan recommended."""
    actions = {a.id: a for a in result.actions if orderable(a.id, ruleset)}
    out = []
    done: set[str] = set()
    for action_id, action in actions.items():
        if action_id in done:
            continue
        group = next((g for g in GROUPS if action_id in g), (action_id,))
        members = [actions[a] for a in group if a in actions]
        done.update(a.id for a in members)
        out.append({
            "label": words.typography(f" {words.phrase('with')} ".join(words.ordered(a.id, ruleset).split(" (")[0]
                                                                        for a in members)
                                      + f" ({words.timing(action.timing).lower()})"),
            "uuid": str(uuid.uuid4()),
            "isRecommended": action_id in ruleset.scan_orders,
            "actions": [_draft(a, patient_id, ruleset, words) for a in members],
        })
    out.sort(key=lambda suggestion: not suggestion["isRecommended"])   # the scan first
    return out


# What makes Markdown of plain text: links and images ([ ]), HTML and autolinks (<), entities (&), emphasis
# (* and _ at a word's edge: snake_case stays as it is), code (`), strikethrough (~), tables (|), escapes (\).
_MARKDOWN = re.compile(r"([\\`*\[\]<&|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_AUTOLINK = re.compile(r"(?i)(https?|ftp|mailto|www)([:.@])")


def escape(text: str) -> str:
    """Text from the record as inert Markdown: no link, image, HTML, emphasis, heading or new block.

    Every character that gives plain text a Markdown meaning is backslash-escaped (CommonMark renders
    ``\\[`` as ``[``), line breaks become spaces (no new block: heading, list, quote), and what a
    GitHub-flavoured renderer would turn into a link by itself (``https://``, ``www.``) is broken up
    the same way."""
    flat = " ".join(str(text).encode("utf-8", "replace").decode("utf-8").split())   # a lone surrogate: '?'
    return _AUTOLINK.sub(lambda m: f"{m.group(1)}\\{m.group(2)}", _MARKDOWN.sub(r"\\\1", flat))


_MAPPED = re.compile(r"^(?P<path>[a-z_]+(?:\.[a-z0-9_]+)+) (?:= (?P<value>\S+)|(?P<unknown>left unknown))(?P<rest>.*)$")
_AGE = re.compile(r"^age (?P<age>\d+) years(?P<rest>.*)$")
_CANCER = re.compile(r"^cancer (?P<code>\S+) -> (?P<level>\w+)(?:, (?P<primary>\w+))?$")


def _from_line(line: str) -> Mapped | str:
    """A machine line (the older form of what was mapped) as a :class:`Mapped`, its parenthesis kept as the note."""
    if match := _AGE.match(line):
        return Mapped("patient.age_years", int(match["age"]), line, (Evidence("Patient"),))
    if match := _CANCER.match(line):
        return Mapped("patient.cancer.history", match["level"], line, (Evidence("Condition", code=match["code"]),),
                      primary=match["primary"] or "")
    match = _MAPPED.match(line)
    if not match or match["path"] not in triage.FIELDS:
        return line
    raw = match["value"]
    value: Any = None if match["unknown"] else raw in ("true", "present") if raw in ("true", "false", "present", "absent") \
        else float(raw) if re.fullmatch(r"-?\d+(\.\d+)?", raw) else raw
    return Mapped(match["path"], value, line, note=match["rest"].strip().removeprefix("(").removesuffix(")"))


def _value_words(entry: Mapped, words: CardWords) -> str:
    """The value as the form shows it: Yes / No / Not known, the choice's label, a number."""
    value = entry.value
    if value is None:
        return words.form_word("words", "not_known", "Not known")
    if value is True or value is False:
        return words.form_word("words", "yes" if value else "no", "Yes" if value else "No")
    if isinstance(value, (int, float)):
        return words.number(f"{round(value, 2):g}")
    return words.form_word("choices", str(value), str(value).replace("_", " ").capitalize())


def _evidence_words(evidence: Evidence, words: CardWords) -> str:
    """One piece of the record: what kind it is, its display and code, its own value (escaped: the record's)."""
    kind = RESOURCE_WORDS.get(evidence.resource, (evidence.resource, evidence.resource))[1 if words.fr else 0]
    code = " ".join(p for p in (SYSTEM_NAMES.get(evidence.system, evidence.system), evidence.code) if p)
    named = ", ".join(p for p in (escape(evidence.display), escape(code)) if p)
    text = f"{kind} {named}" if named else kind
    return text + (f": {escape(words.number(evidence.value))}" if evidence.value and evidence.resource != "Patient" else "")


def _why_words(entry: Mapped, words: CardWords) -> str:
    if entry.why in WHY_WORDS:
        params = dict(entry.params)
        if "status" in params:
            params["status"] = STATUS_WORDS.get(params["status"], (params["status"],) * 2)[1 if words.fr else 0]
        if "celsius" in params:
            params["celsius"] = words.number(str(params["celsius"]))
        if "numbers" in params:
            params["numbers"] = " / ".join(words.number(n) for n in str(params["numbers"]).split(" / "))
        return escape(WHY_WORDS[entry.why][1 if words.fr else 0].format(**params))
    if entry.why:
        return escape(entry.reason)
    return escape(NOTES_FR.get(entry.note, entry.note) if words.fr else entry.note)


def _mapped_words(entry: Mapped | str, words: CardWords) -> str:
    """One "From the record" part: the form's label, the value in the form's words, then in parentheses the
    record's evidence (resource, display, code system and code, its own value) and why, escaped."""
    if isinstance(entry, str):
        entry = _from_line(entry)
        if isinstance(entry, str):
            return escape(entry)
    said = f"{_label(entry.path, words.labels, words)}: {_value_words(entry, words)}"
    if entry.path == "patient.cancer.history" and entry.primary:
        said += f", {_label('patient.cancer.primary', words.labels, words)}: " \
                f"{words.form_word('choices', entry.primary, entry.primary.capitalize())}"
    details = [_evidence_words(e, words) for e in entry.evidence]
    if why := _why_words(entry, words):
        details.append(why)
    return said + (f" ({'; '.join(details)})" if details else "")


def _from_record(mapped: Iterable[Mapped | str], words: CardWords = ENGLISH) -> str:
    """The "From the record" line: what was mapped, in the form's words (the record's own parts escaped)."""
    parts = [_mapped_words(entry, words) for entry in mapped]
    return f"**{words.phrase('from_record')}**: " + ("; ".join(parts) if parts else words.phrase("nothing_mapped"))


def _record_lines(record: Optional[Record], words: CardWords = ENGLISH) -> list[str]:
    if record is None:
        return []
    parts = []
    for key in TEMPLATES:
        name = TEMPLATE_NAMES_FR.get(key, key) if words.fr else key
        if key in record.unavailable:
            reason = words.phrase("technical", reason=record.unavailable[key])
            parts.append(escape(f"{name}: {words.phrase('not_available')} ({reason})"))
        elif key in record.origin:
            origin = ORIGINS_FR.get(record.origin[key], record.origin[key]) if words.fr else record.origin[key]
            parts.append(escape(f"{name}: {origin}"))
    return [f"**{words.phrase('record')}**: " + "; ".join(parts)] if parts else []


def _links(root: str, form_token: Optional[str], words: CardWords = ENGLISH) -> list[dict[str, str]]:
    """The rules, and the form in the card's language first, then in the other language."""
    prefill = f"?from={form_token}" if form_token else ""
    rules = {"label": words.phrase("rules_link"), "url": f"{root}v1/ruleset", "type": "absolute"}
    english = {"url": f"{root}{prefill}", "type": "absolute"}
    french = {"url": f"{root}fr/{prefill}", "type": "absolute"}
    if words.fr:
        form = [{"label": words.phrase("form_link"), **french}, {"label": words.phrase("other_form_link"), **english}]
    else:
        form = [{"label": words.phrase("form_link"), **english}, {"label": words.phrase("other_form_link"), **french}]
    return [rules, *form]


def _citations(action: triage.ActionItem, ruleset: triage.Ruleset, words: CardWords) -> list[str]:
    """The readable citations of an action, each once, national guidance first.

    Read from the sources of the rules that gave the action (``because``), each split where a ``;`` stands
    outside parentheses, so that a citation such as "NICE NG234 (immobilise ...; consider ...)" stays
    whole (the result's joined ``source`` string cuts it at every ``;``)."""
    return list(dict.fromkeys(words.cite(part) for part in _citation_parts(action, ruleset)))


def _citation_parts(action: triage.ActionItem, ruleset: triage.Ruleset) -> tuple[str, ...]:
    """The citations of an action before they are made readable, ordered; made once per ruleset for each
    (rules that gave it, source) and kept in the ruleset's derived tables (a card cites each action up
    to three times, and every call rebuilt them: about a tenth of a CDS call's time)."""
    data = ruleset.data
    key = ("cds-citation-parts", tuple(action.because), action.source)
    found = data.cache.get(key)
    if found is None:
        from triage import source_rank   # the order the result and the form use

        rules = {r.id for r in data.rules}
        sources = [data.rule(r).source or "" for r in action.because if r in rules] or [action.source]
        parts = list(dict.fromkeys(part for source in sources for part in source_parts(source)))
        parts.sort(key=source_rank)
        found = data.cache[key] = tuple(parts)
    return found


def _sources_block(result: triage.Result, ruleset: triage.Ruleset,
                   words: CardWords = ENGLISH) -> tuple[list[str], dict[str, int]]:
    """Every citation of the result once, numbered (national guidance first, as the result orders them)."""
    numbers: dict[str, int] = {}
    for action in result.actions:
        for part in _citations(action, ruleset, words):
            if part not in numbers:
                numbers[part] = len(numbers) + 1
    lines = [f"**{words.phrase('sources')}**"] + [f"{n}. {text}" for text, n in numbers.items()] if numbers else []
    return lines, numbers


def _refs(action: triage.ActionItem, ruleset: triage.Ruleset, words: CardWords, numbers: Mapping[str, int]) -> str:
    found = sorted({numbers[p] for p in _citations(action, ruleset, words) if p in numbers})
    return f" [{', '.join(map(str, found))}]" if found else ""


def _unknown_lines(result: triage.Result, ruleset: triage.Ruleset, words: CardWords) -> list[str]:
    lines = []
    for u in sorted(result.unknowns, key=lambda u: -URGENCY_RANK[u.could_raise_to]):
        added = [words.flag(f, ruleset.data.flags[f].label) for f in u.would_add_flags]
        scans = [words.action(a, ruleset.data.actions[a].label) for a in u.would_add_actions]
        lines.append(f"- {_label(u.field, words.labels, words)}: {words.condition(u.field)}, "
                     f"{words.urgency_in_text(u.could_raise_to)}"
                     + (f"; {words.phrase('adds')}: {'; '.join(added)}" if added else "")
                     + (f"; {words.phrase('would_ask')}: {'; '.join(scans)}" if scans else ""))
    return lines


def _actions_and_flags(result: triage.Result, ruleset: triage.Ruleset, words: CardWords,
                       numbers: Mapping[str, int]) -> list[str]:
    """The actions with their timing and source numbers, then the flags with their severity."""
    lines: list[str] = []
    if result.actions:
        lines.append(f"**{words.phrase('actions')}**")
        lines += [f"- {words.timing(a.timing)}: {words.action(a.id, a.label)}{_refs(a, ruleset, words, numbers)}"
                  for a in result.actions]
        lines.append("")
    if result.flags:
        lines.append(f"**{words.phrase('flags')}**")
        lines += [f"- [{words.severity(f.severity)}] {words.flag(f.id, f.label)}" for f in result.flags]
        lines.append("")
    return lines


def _record_and_sources(mapped: Sequence[Mapped | str], record: Optional[Record], sources: list[str],
                        words: CardWords = ENGLISH) -> list[str]:
    """What was read from the record and where it came from, then the numbered sources."""
    lines = [_from_record(mapped, words), *_record_lines(record, words), ""]
    return lines + sources + [""] if sources else lines


def _card(result: triage.Result, ruleset: triage.Ruleset, summary: str, indicator: str, lines: list[str],
          root: str, patient_id: Optional[str], form_token: Optional[str], words: CardWords = ENGLISH) -> dict[str, Any]:
    """A card with its detail, source, override reasons, links and the draft orders of the result."""
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": words.typography(summary),
        "indicator": indicator,
        "detail": words.typography("\n".join(lines)),
        "source": {"label": words.phrase("source_label", name=ruleset.name, version=ruleset.version),
                   "url": f"{root}v1/ruleset"},
        "overrideReasons": words.override_reasons(),
        "links": _links(root, form_token, words),
    }
    suggestions = suggestions_for(result, patient_id, ruleset, words)
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "any"
    return card


def _withheld_lines(result: triage.Result, words: CardWords = ENGLISH) -> list[str]:
    """The actions held back that a clinician acts on (the steroid, a scan, a surgeon), with the reason."""
    lines = []
    for held in result.withheld:
        if held.id in COMPANIONS:
            continue
        reasons = "; ".join(words.reason(h.reason) + (f" ({words.phrase('unless')}: {words.reason(h.release)})"
                                                      if h.release else "") for h in held.held_by)
        lines.append(f"- {words.action(held.id, held.label)}: {reasons}")
    return [f"**{words.phrase('withheld')}**", *lines, ""] if lines else []


def card_for(result: triage.Result, ruleset: triage.Ruleset, mapped: Sequence[Mapped | str], root: str,
             record: Optional[Record] = None, patient_id: Optional[str] = None,
             form_token: Optional[str] = None, labels: Optional[Mapping[str, str]] = None,
             cite: Optional[Cite] = None, words: Optional[CardWords] = None) -> dict[str, Any]:
    """The card for a result; ``root`` is the service's public base URL (ends with '/').

    Everything a clinician reads is in words: the form's labels for the findings still to ask
    (``labels``: case field -> English label), readable citations (``cite``: a rule's source -> its
    citations), numbered once, and the titles of the rules that applied; ids and field paths stay in
    the machine-readable parts (the ruleset link, the decision record). ``words`` (:class:`CardWords`)
    gives all of these in one language at once, and wins over ``labels`` and ``cite``. ``form_token``
    names what the record said, kept by the service for 30 minutes: the form's links then open with
    those answers filled in (the link itself carries no finding)."""
    words = _words(words, labels, cite)
    sources, numbers = _sources_block(result, ruleset, words)
    headline = words.headline(result.headline)
    summary = headline
    # An answer not in the record could raise the urgency: the card says "so far", as the form does (a
    # routine card read "No MSCC pathway today" with four of the five symptom groups never recorded).
    # The indicator is the result's own: a card for every chart whose record is incomplete stays info.
    raising = result.raised_by_unknowns()
    if raising is not None:
        so_far = words.phrase("so_far_summary", headline=headline)
        summary = so_far if len(so_far) <= HEADLINE_MAX else headline
        lines = [f"**{words.urgency(result.urgency)}** ({words.phrase('so_far_line', level=words.urgency_in_text(raising))})"
                 f": {headline}", ""]
    else:
        lines = [f"**{words.urgency(result.urgency)}**: {headline}", ""]
    lines += _actions_and_flags(result, ruleset, words, numbers)
    lines += _withheld_lines(result, words)
    if result.unknowns:
        lines.append(words.phrase("not_yet_assessed"))
        lines += _unknown_lines(result, ruleset, words)
        lines.append("")
    lines += _record_and_sources(mapped, record, sources, words)
    titles = "; ".join(words.title(r.id, r.title) for r in result.fired_rules)
    lines.append(f"{words.phrase('rules_applied', name=ruleset.name, version=ruleset.version)}: {titles}. "
                 f"{words.disclaimer(result.disclaimer)}")
    # a checked ruleset's headlines all fit (triage.HEADLINE_MAX, checked by load_form_texts); CDS Hooks: < 140
    return _card(result, ruleset, summary[:HEADLINE_MAX], INDICATOR[result.urgency], lines, root, patient_id,
                 form_token, words)


THIN_SUMMARY = PHRASES["thin_summary"][0]
URGENCY_RANK = {"routine": 0, "urgent": 1, "emergency": 2}


def _label(path: str, labels: Mapping[str, str], words: CardWords = ENGLISH) -> str:
    """The form's label of a case field; never the raw path (a readable fallback if unlabelled).
    A detail of a finding is named with its finding ("Limb weakness (Getting worse)")."""
    parts = path.split(".")
    group = ".".join(parts[:2]) + ".present" if len(parts) == 3 and parts[0] == "presentation" else None
    if labels.get(path) and group and group != path and labels.get(group):
        return f"{labels[group]} ({labels[path]})"
    if labels.get(path):
        return labels[path]
    words_of_path = [part for part in path.split(".") if part not in ("patient", "presentation", "assessment", "present")]
    return " ".join(words_of_path[-2:]).replace("_", " ").capitalize() or ("Élément" if words.fr else "Finding")


def thin_card(result: triage.Result, ruleset: triage.Ruleset, labels: Mapping[str, str], mapped: Sequence[Mapped | str],
              root: str, record: Optional[Record] = None, patient_id: Optional[str] = None,
              form_token: Optional[str] = None, cite: Optional[Cite] = None,
              words: Optional[CardWords] = None, no_symptom: bool = False) -> dict[str, Any]:
    """The card for a record read for this patient that held no finding (or, ``no_symptom``, findings but
    no symptom, and nothing above routine): a warning that asks for the form.

    Never "No MSCC pathway today": an empty record is not a reassuring one. ``labels``: case field ->
    the form's English label (``rules/form.yaml``); no field path is shown; ``words`` gives every word in
    one language and wins over ``labels`` and ``cite``. Should the rules still find something to do
    (from the age alone), its actions and orders are kept and the indicator never lowered."""
    words = _words(words, labels, cite)
    lines = [words.phrase("no_symptom_body" if no_symptom else "thin_body"), ""]
    sources, numbers = _sources_block(result, ruleset, words)
    if result.unknowns:
        lines.append(f"**{words.phrase('ask_first')}**")
        lines += _unknown_lines(result, ruleset, words)
        lines.append("")
    lines += _actions_and_flags(result, ruleset, words, numbers)
    lines += _record_and_sources(mapped, record, sources, words)
    lines.append(words.disclaimer(result.disclaimer))
    indicator = INDICATOR[result.urgency] if result.urgency == "emergency" else "warning"
    summary = words.phrase("no_symptom_summary" if no_symptom else "thin_summary")
    return _card(result, ruleset, summary, indicator, lines, root, patient_id, form_token, words)

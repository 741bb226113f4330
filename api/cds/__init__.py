"""CDS Hooks 2.0: the service an EHR calls (``patient-view``), its cards and what it keeps.

- :mod:`.service`: the blueprint (discovery, the service, feedback), JWT checks and settings;
- :mod:`.cards`: a result as CDS Hooks cards, in the form's words (English or French);
- :mod:`.jwks`: the trusted issuers and their keys (inline or a JWK Set URL);
- :mod:`.store`: the seen JWT ids and the feedback (SQLite or PostgreSQL).

The patient's record is read with ``..fhir``; the modules are imported by name, not here.
"""

"""FHIR R4: reading a patient's record for the CDS Hooks service.

- :mod:`.fetch`: the bounded GETs to the EHR's FHIR server (the prefetch the EHR did not send);
- :mod:`.record`: the record as the service holds it (the prefetch templates, what was fetched);
- :mod:`.map`: the record's resources to a case, by the code map ``codemap.yaml`` (shipped with the package);
- :mod:`.units`: the lab units the map converts.

Nothing here imports Flask or the CDS Hooks service (``..cds``), which uses this package.
"""

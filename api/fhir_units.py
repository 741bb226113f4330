"""Units: a FHIR Quantity in, a number in the case's unit out. The only place units are converted.

Each analyte of the code map names a quantity kind below; a Quantity is read by its UCUM ``code``
(system ``http://unitsofmeasure.org``), or else by its human ``unit`` text compared without case.
A unit not in the table, a comparator (``<``, ``>=``...) or a value that is not a finite number
converts to None: the finding stays unknown, never a guess.

Factors:
- calcium: 1 mg/dL = 0.2495 mmol/L (molar mass of calcium 40.08 g/mol).
- 25-OH vitamin D: 1 ng/mL = 2.496 nmol/L (molar mass of 25-hydroxyvitamin D3 400.6 g/mol); ug/L = ng/mL.
- creatinine clearance: mL/min only (an eGFR in mL/min/1.73 m2 is not a clearance and is not read).
- body temperature: degrees Celsius, or Fahrenheit converted (F - 32) x 5/9.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

UCUM = "http://unitsofmeasure.org"


def _times(factor: float) -> Callable[[float], float]:
    return lambda value: value * factor


# kind -> {unit (UCUM code, or lower-case unit text) -> converter to the case's unit}
CONVERSIONS: dict[str, dict[str, Callable[[float], float]]] = {
    "calcium_mmol_l": {"mmol/L": _times(1.0), "mmol/l": _times(1.0), "mg/dL": _times(0.2495), "mg/dl": _times(0.2495)},
    "vitamin_d_nmol_l": {"nmol/L": _times(1.0), "nmol/l": _times(1.0), "ng/mL": _times(2.496), "ng/ml": _times(2.496),
                         "ug/L": _times(2.496), "ug/l": _times(2.496), "µg/l": _times(2.496)},
    "clearance_ml_min": {"mL/min": _times(1.0), "ml/min": _times(1.0)},
    "temperature_celsius": {"Cel": _times(1.0), "°c": _times(1.0), "c": _times(1.0), "cel": _times(1.0),
                            "[degF]": lambda f: (f - 32.0) * 5.0 / 9.0, "°f": lambda f: (f - 32.0) * 5.0 / 9.0,
                            "f": lambda f: (f - 32.0) * 5.0 / 9.0, "degf": lambda f: (f - 32.0) * 5.0 / 9.0},
}


def convert(quantity: Any, kind: str) -> Optional[float]:
    """The Quantity's value in the unit of ``kind``, or None when it cannot be converted safely."""
    table = CONVERSIONS[kind]
    if not isinstance(quantity, dict) or quantity.get("comparator") is not None:
        return None
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    converter = None
    code, system, unit = quantity.get("code"), quantity.get("system"), quantity.get("unit")
    if isinstance(code, str) and system == UCUM:
        converter = table.get(code)
    if converter is None and isinstance(unit, str):
        converter = table.get(unit) or table.get(unit.strip().lower())
    if converter is None:
        return None
    return round(converter(float(value)), 3)

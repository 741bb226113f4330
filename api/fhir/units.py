"""Units: a FHIR Quantity in, a number in the case's unit out. The only place units are converted.

Each analyte of the code map names a quantity kind below; a Quantity is read by its UCUM ``code``
(system ``http://unitsofmeasure.org``), or else by its human ``unit`` text compared without case.
A unit not in the table, a comparator (``<``, ``>=``...) or a value that is not a finite number
converts to None: the finding stays unknown, never a guess.

Factors:
- calcium: 1 mg/dL = 0.2495 mmol/L (molar mass of calcium 40.08 g/mol).
- 25-OH vitamin D: 1 ng/mL = 2.496 nmol/L (molar mass of 25-hydroxyvitamin D3 400.6 g/mol); ug/L = ng/mL.
- creatinine clearance: mL/min only (an eGFR in mL/min/1.73 m2 is not a clearance and is not read).
- body temperature: degrees Celsius (Cel, °C, degC, Celsius...), or Fahrenheit converted (F - 32) x 5/9.
- platelets (case-format 2.2, 10^9/L): 10*3/uL, 10*9/L, /nL and 10^9/L (and the text 10^3/uL) are the same
  number (x 1). Every other
  unit is refused, /uL and cells/mm3 included (1000 times larger: 150000/uL is 150 x 10^9/L, but a number
  read in the wrong unit would be a platelet count 1000 times off, so it is left to a person).
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
                            "degc": _times(1.0), "deg c": _times(1.0), "celsius": _times(1.0), "℃": _times(1.0),
                            "[degF]": lambda f: (f - 32.0) * 5.0 / 9.0, "°f": lambda f: (f - 32.0) * 5.0 / 9.0,
                            "f": lambda f: (f - 32.0) * 5.0 / 9.0, "degf": lambda f: (f - 32.0) * 5.0 / 9.0,
                            "deg f": lambda f: (f - 32.0) * 5.0 / 9.0, "fahrenheit": lambda f: (f - 32.0) * 5.0 / 9.0,
                            "℉": lambda f: (f - 32.0) * 5.0 / 9.0},
    "platelets_10e9_l": {"10*3/uL": _times(1.0), "10*9/L": _times(1.0), "/nL": _times(1.0),
                         "10*3/ul": _times(1.0), "10*9/l": _times(1.0), "/nl": _times(1.0),
                         "10^9/l": _times(1.0), "10^3/ul": _times(1.0)},
}


def _both(quantity: dict[str, Any], table: dict[str, Callable[[float], float]]
          ) -> tuple[Optional[Callable[[float], float]], Optional[Callable[[float], float]]]:
    """The conversions the UCUM code and the unit text each name (None: it names none)."""
    code, system, unit = quantity.get("code"), quantity.get("system"), quantity.get("unit")
    by_code = table.get(code) if isinstance(code, str) and system == UCUM else None
    by_text = (table.get(unit) or table.get(unit.strip().lower())) if isinstance(unit, str) else None
    return by_code, by_text


def _disagree(by_code: Optional[Callable[[float], float]], by_text: Optional[Callable[[float], float]]) -> bool:
    return by_code is not None and by_text is not None and not math.isclose(by_code(1.0), by_text(1.0))


def units_disagree(quantity: Any, kind: str) -> bool:
    """Whether the Quantity's UCUM code and its unit text name different units of ``kind`` (3.6 "mg/dL"
    coded "mmol/L"): which one the value is in cannot be told, so it is not used."""
    return isinstance(quantity, dict) and _disagree(*_both(quantity, CONVERSIONS[kind]))


def _converter(quantity: dict[str, Any], table: dict[str, Callable[[float], float]]) -> Optional[Callable[[float], float]]:
    by_code, by_text = _both(quantity, table)
    if _disagree(by_code, by_text):
        return None   # the code and the text disagree: neither is taken
    return by_code or by_text


def unit_known(quantity: Any, kind: str) -> Optional[bool]:
    """Whether the Quantity's unit converts to ``kind`` (None: not a Quantity); for saying why a value was refused."""
    if not isinstance(quantity, dict):
        return None
    return _converter(quantity, CONVERSIONS[kind]) is not None


def convert(quantity: Any, kind: str) -> Optional[float]:
    """The Quantity's value in the unit of ``kind``, or None when it cannot be converted safely."""
    table = CONVERSIONS[kind]
    if not isinstance(quantity, dict) or quantity.get("comparator") is not None:
        return None
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:   # an integer beyond a float (10**400, valid JSON) is not a lab value, nor a crash
        number = float(value)
    except OverflowError:
        return None
    if not math.isfinite(number):
        return None
    converter = _converter(quantity, table)
    if converter is None:
        return None
    converted = converter(number)
    if not math.isfinite(converted):
        return None
    rounded = round(converted, 3)
    # A value that rounding would carry across zero (-0.0000001 -> -0.0, which passes a limit of 0)
    # keeps its sign: the limits, not the rounding, decide whether it is usable.
    return converted if rounded == 0 and converted != 0 else rounded

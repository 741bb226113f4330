"""Random valid cases, dense or sparse, for robustness tests and benchmarks (no clinical meaning).

Every field of the case model is drawn from its own type and range (tri-states true with probability
``density``), so dense cases reach combinations no hand-written vignette does. Cases that normalisation
rejects as contradictory are redrawn.
"""

from __future__ import annotations

import random
from typing import Any, Iterator

from ._case import FIELDS, GROUPS, set_path
from ._errors import CaseValidationError

# Values that are valid but awkward for a number parser: exponent forms, the smallest double, zero signs.
AWKWARD_NUMBERS = (0.0, -0.0, 1e-05, 0.00001, 1e-300, 5e-324, 1.5e-7, 2.5, 1e3)



def random_case(rng: random.Random, density: float = 0.5) -> dict[str, Any]:
    """One random case (not checked: see :func:`random_valid_cases`)."""
    case: dict[str, Any] = {}
    for path, spec in FIELDS.items():
        value: Any
        if spec.kind == "tristate":
            roll = rng.random()
            value = True if roll < density else (None if roll < density + (1 - density) / 2 else False)
        elif rng.random() < 0.5:
            continue
        elif spec.kind == "enum":
            value = rng.choice(spec.values)
        elif spec.kind == "integer":
            value = rng.randint(int(spec.minimum or 0), int(min(spec.maximum or 100, 120)))
        elif spec.kind == "number":
            lo, hi = spec.minimum or 0.0, min(spec.maximum or 1000.0, 1000.0)
            value = rng.choice([round(rng.uniform(lo, hi), rng.randint(0, 4)), rng.uniform(lo, hi)])
            if rng.random() < 0.1:
                value = max(lo, min(hi, rng.choice(AWKWARD_NUMBERS)))
        else:
            continue
        if value is not None:
            set_path(case, path, value)
    pres = case.get("presentation", {})
    for group in GROUPS:  # a group recorded absent with a sub-finding present is a contradiction: avoid most
        node = pres.get(group)
        if node and node.get("present") is False and any(v is True for k, v in node.items() if k != "present"):
            node["present"] = rng.choice([True, None])
    return case


def random_valid_cases(seed: int, n: int, density: float = 0.5) -> Iterator[dict[str, Any]]:
    """``n`` random cases that the case model accepts (contradictory draws are redrawn)."""
    from ._case import parse_case

    rng = random.Random(seed)
    made = 0
    while made < n:
        case = random_case(rng, density)
        try:
            parse_case(case)
        except CaseValidationError:
            continue
        made += 1
        yield case

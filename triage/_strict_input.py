"""Reading JSON and YAML files written by people (cases for ``triage evaluate``, vignette files).

A key given twice, bytes that are not UTF-8, nesting deeper than Python's recursion: each is a
``ValueError`` naming what is wrong, never the last copy silently winning (a case whose second
``"presentation": {}`` emptied the first came out routine) or a traceback. The HTTP API reads its
bodies with the same :func:`no_duplicate_keys`. A vignette file with a key given twice is read as YAML
and JSON tools read it (the last copy), with a :class:`DuplicateKeyWarning`: a suite written by
someone else still replays, the warning says which expectation was dropped, and ``triage vignette
check`` refuses the file.
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Callable, Optional

import yaml


class DuplicateKeyWarning(UserWarning):
    """A key given twice in a vignette file, read as YAML and JSON tools do (the last copy wins).
    ``triage replay`` and the pytest plugin show it; ``triage vignette check`` counts it a problem."""


def decode(data: bytes) -> str:
    """UTF-8 text (a byte-order mark is dropped); ``ValueError`` naming the first byte that is not."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"is not UTF-8 text (byte {exc.start}: 0x{data[exc.start]:02x})") from None


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A ``json.loads`` ``object_pairs_hook`` that refuses a key given twice in one object (``ValueError``
    naming it): what the HTTP API and ``triage evaluate`` read."""
    return _pairs_hook(None)(pairs)


def _pairs_hook(warn: Optional[Callable[[str], None]]) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, value in items:
            if key in found:
                if warn is None:
                    raise ValueError(f"the key '{key}' appears twice in one object")
                warn(f"the key '{key}' appears twice in one object; the last one is read")
            found[key] = value
        return found
    return pairs


def loads_json(text: str, warn: Optional[Callable[[str], None]] = None) -> Any:
    """JSON, refusing a key given twice in one object (or, with ``warn``, saying so and reading the
    last one) and nesting Python cannot follow."""
    try:
        return json.loads(text, object_pairs_hook=_pairs_hook(warn))
    except RecursionError:
        raise ValueError("nests arrays or objects too deep to be read") from None


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load``, refusing a key given twice in one mapping (a merge key ``<<`` still merges),
    or with ``warn`` set, saying so and reading the last one."""

    warn: Optional[Callable[[str], None]] = None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:   # an unhashable key: the base class says so
                break
            if duplicate and self.warn is not None:
                self.warn(f"line {key_node.start_mark.line + 1}: the key {key!r} appears twice in one mapping; "
                          "the last one is read")
            elif duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"the key {key!r} appears twice in it",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def loads_yaml(text: str, warn: Optional[Callable[[str], None]] = None) -> Any:
    """YAML (safe: no Python objects), refusing a key given twice (or, with ``warn``, saying so and
    reading the last one) and nesting Python cannot follow. Raises ``yaml.YAMLError`` for the first,
    ``ValueError`` for the second."""
    loader = _StrictLoader(text)
    loader.warn = warn
    try:
        return loader.get_single_data()
    except RecursionError:
        raise ValueError("nests lists or mappings too deep to be read") from None
    finally:
        loader.dispose()


def warn_duplicates(source: str) -> Callable[[str], None]:
    """A ``warn`` for :func:`loads_json` and :func:`loads_yaml` that raises a :class:`DuplicateKeyWarning`
    naming ``source``."""
    def warn(message: str) -> None:
        warnings.warn(DuplicateKeyWarning(f"{source}: {message}"), stacklevel=2)
    return warn

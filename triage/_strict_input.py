"""Reading JSON and YAML files written by people (cases for ``triage evaluate``, vignette files).

A key given twice, bytes that are not UTF-8, nesting deeper than Python's recursion: each is a
``ValueError`` (or ``yaml.YAMLError``) naming what is wrong, never the last copy silently winning (a
case whose second ``"presentation": {}`` emptied the first came out routine; a vignette whose second
``actions_exclude`` dropped the first passed a result the first forbade) or a traceback. The HTTP API
reads its bodies with the same :func:`no_duplicate_keys`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml


def decode(data: bytes) -> str:
    """UTF-8 text (a byte-order mark is dropped); ``ValueError`` naming the first byte that is not."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"is not UTF-8 text (byte {exc.start}: 0x{data[exc.start]:02x})") from None


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A ``json.loads`` ``object_pairs_hook`` that refuses a key given twice in one object (``ValueError``
    naming it): what the HTTP API, ``triage evaluate`` and the vignette files read."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the key '{key}' appears twice in one object")
        found[key] = value
    return found


def loads_json(text: str) -> Any:
    """JSON, refusing a key given twice in one object and nesting Python cannot follow."""
    try:
        return json.loads(text, object_pairs_hook=no_duplicate_keys)
    except RecursionError:
        raise ValueError("nests arrays or objects too deep to be read") from None


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load``, refusing a key given twice in one mapping (a merge key ``<<`` still merges)."""

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
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"the key {key!r} appears twice in it",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# Numbers as YAML 1.2 reads them (its core schema), never by YAML 1.1's rules, which PyYAML follows: there
# "1:30" is the base-60 integer 90 and "010" the octal 8, so a weakness that began "1:30" ago was read as
# 90 hours old and lost the 4-hour scan (audit of 6 December), and "1_000" is 1000. Here an integer is
# decimal digits with an optional sign ("010" is 10), a float as JSON writes one (a dot or an exponent, or
# both) or .inf/.nan (which the case model refuses); anything else stays text, which a number field of
# the case refuses by name. Booleans keep YAML 1.1's words (yes/no, on/off), which read as meant.
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_StrictLoader.add_implicit_resolver(_INT, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
_StrictLoader.add_implicit_resolver(
    _FLOAT, re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))


def _decimal_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    return int(loader.construct_scalar(node), 10)   # "010" is 10 (PyYAML's own constructor reads octal)


_StrictLoader.add_constructor(_INT, _decimal_int)

_STR = "tag:yaml.org,2002:str"


def loads_yaml(text: str, text_keys: frozenset[str] = frozenset()) -> Any:
    """YAML (safe: no Python objects), refusing a key given twice and nesting Python cannot follow.
    Raises ``yaml.YAMLError`` for the first, ``ValueError`` for the second.

    ``text_keys``: in each mapping of a top-level list, a plain value under one of these keys is read as
    the text written, never resolved (a vignette ``id: NO`` is "NO", not false; ``010`` is "010", not
    10; an empty ``title:`` is ""). Elsewhere numbers are read as YAML 1.2 reads them (``1:30`` is the text
    "1:30", not 90; ``010`` is 10, not 8)."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if text_keys and isinstance(node, yaml.SequenceNode):
            for item in node.value:
                if isinstance(item, yaml.MappingNode):
                    for key_node, value_node in item.value:
                        if isinstance(key_node, yaml.ScalarNode) and key_node.value in text_keys \
                                and isinstance(value_node, yaml.ScalarNode):
                            value_node.tag = _STR
        return None if node is None else loader.construct_document(node)
    except RecursionError:
        raise ValueError("nests lists or mappings too deep to be read") from None
    finally:
        loader.dispose()

"""pytest plugin: vignette files collected as tests, one test per vignette.

Registered through the ``pytest11`` entry point of mscc-triage, so installing the package is enough.
Collected: ``.yaml``, ``.yml`` and ``.json`` files (in any letter case) inside a folder whose name is
listed in the ini option ``vignette_dirs`` (default: ``vignettes``; compared in any letter case), at
any depth; other YAML files (rules, CI configuration) are never collected. The ruleset is
``--ruleset PATH``, else the ini option ``vignette_ruleset`` (relative to the rootdir), else
``$MSCC_TRIAGE_RULES`` or the installed ruleset: the order ``triage replay`` follows. Each test's node
id is ``FILE::ID``; a failure lists every mismatch. A file that is not a valid vignette file, an id
given in two files, or a ruleset that cannot be loaded is a collection error of one line, as the
command line says it (no traceback).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from ._errors import TriageError
from ._vignettes import Vignette, check, is_vignette_file, load_vignette_file

_RULESET = pytest.StashKey[Any]()
_SEEN_IDS = pytest.StashKey[dict[str, str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mscc-triage", "clinical vignettes")
    group.addoption("--ruleset", dest="vignette_ruleset", default=None,
                    help="ruleset folder the vignettes are replayed against")
    parser.addini("vignette_dirs", "names of folders whose YAML/JSON files are vignette files",
                  type="linelist", default=["vignettes"])
    parser.addini("vignette_ruleset", "ruleset folder for the vignettes (relative to the rootdir)", default="")


def _ruleset(config: pytest.Config) -> Any:
    """The suite's ruleset, loaded once; a ruleset that cannot be loaded is remembered as its error."""
    if _RULESET not in config.stash:
        from ._triage import default_ruleset, load_ruleset

        option = config.getoption("vignette_ruleset")
        ini = config.getini("vignette_ruleset")
        try:
            if option:
                config.stash[_RULESET] = load_ruleset(option)
            elif ini:
                config.stash[_RULESET] = load_ruleset(Path(str(config.rootpath)) / ini)
            else:
                config.stash[_RULESET] = default_ruleset()
        except TriageError as exc:
            config.stash[_RULESET] = exc
    found = config.stash[_RULESET]
    if isinstance(found, TriageError):
        raise found
    return found


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Optional[pytest.Collector]:
    if not is_vignette_file(file_path):
        return None
    dirs = {name.lower() for name in parent.config.getini("vignette_dirs")}
    if not any(part.lower() in dirs for part in file_path.parent.parts):
        return None
    return VignetteFile.from_parent(parent, path=file_path)


class VignetteFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        try:
            _ruleset(self.config)   # a broken ruleset: one line per file, not a traceback per vignette
            vignettes = load_vignette_file(self.path)
        except TriageError as exc:
            raise self.CollectError(f"{exc}") from None
        seen = self.config.stash.setdefault(_SEEN_IDS, {})
        here = str(self.path)
        for vignette in vignettes:
            if vignette.key in seen:   # unique within the suite (vignette-format), as triage replay checks
                where = "this file" if seen[vignette.key] == here else seen[vignette.key]
                raise self.CollectError(f"{here}: {vignette.key}: duplicate vignette id (also in {where})")
            seen[vignette.key] = here
        for vignette in vignettes:
            yield VignetteItem.from_parent(self, name=vignette.key, vignette=vignette)
class VignetteMismatch(AssertionError):
    pass


class VignetteItem(pytest.Item):
    def __init__(self, *, vignette: Vignette, **kwargs: Any):
        super().__init__(**kwargs)
        self.vignette = vignette
        self.user_properties.append(("title", vignette.title))

    def runtest(self) -> None:
        outcome = check(self.vignette, _ruleset(self.config), str(self.path))
        if not outcome.passed:
            raise VignetteMismatch(outcome.mismatches)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, VignetteMismatch):
            lines = [f"vignette {self.vignette.key}: {self.vignette.title}"]
            lines += [f"  {self.vignette.key}: {m}" for m in excinfo.value.args[0]]
            return "\n".join(lines)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, Optional[int], str]:
        return self.path, None, f"{self.vignette.key}: {self.vignette.title}"

"""pytest plugin: vignette files collected as tests, one test per vignette.

Registered through the ``pytest11`` entry point of mscc-triage, so installing the package is enough.
Collected: ``.yaml``, ``.yml`` and ``.json`` files inside a folder whose name is listed in the ini
option ``vignette_dirs`` (default: ``vignettes``), at any depth; other YAML files (rules, CI
configuration) are never collected. The ruleset is ``--ruleset PATH``, else the ini option
``vignette_ruleset`` (relative to the rootdir), else the default ruleset. Each test's node id is
``FILE::ID``; a failure lists every mismatch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from ._errors import TriageError
from ._vignettes import VIGNETTE_SUFFIXES, Vignette, check, load_vignette_file

_RULESET = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mscc-triage", "clinical vignettes")
    group.addoption("--ruleset", dest="vignette_ruleset", default=None,
                    help="ruleset folder the vignettes are replayed against")
    parser.addini("vignette_dirs", "names of folders whose YAML/JSON files are vignette files",
                  type="linelist", default=["vignettes"])
    parser.addini("vignette_ruleset", "ruleset folder for the vignettes (relative to the rootdir)", default="")


def _ruleset(config: pytest.Config) -> Any:
    if _RULESET not in config.stash:
        from ._triage import default_ruleset, load_ruleset

        option = config.getoption("vignette_ruleset")
        ini = config.getini("vignette_ruleset")
        if option:
            config.stash[_RULESET] = load_ruleset(option)
        elif ini:
            config.stash[_RULESET] = load_ruleset(Path(str(config.rootpath)) / ini)
        else:
            config.stash[_RULESET] = default_ruleset()
    return config.stash[_RULESET]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Optional[pytest.Collector]:
    if file_path.suffix not in VIGNETTE_SUFFIXES:
        return None
    dirs = set(parent.config.getini("vignette_dirs"))
    if not any(part in dirs for part in file_path.parent.parts):
        return None
    return VignetteFile.from_parent(parent, path=file_path)


class VignetteFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        seen: set[str] = set()
        for vignette in load_vignette_file(self.path):  # a format error is a collection error naming the file
            if vignette.key in seen:
                raise TriageError(f"{self.path}: duplicate vignette id {vignette.key}")
            seen.add(vignette.key)
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

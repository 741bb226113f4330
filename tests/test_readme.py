"""Examples in the README run (house style 8): every ```python block is executed."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_examples_in_the_readme_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README should show the Python API"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "emergency" in out
    assert "['contact_mscc_coordinator_immediately', 'spinal_surgical_opinion_now', 'dexamethasone_16mg']" in out

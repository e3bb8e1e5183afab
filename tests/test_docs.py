"""The Python examples in the README and the docs run as written: each file's ```python blocks are executed in
order in one namespace (a later block may use an earlier one's names, as a reader following along would)."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "kernels_pallas" / "README.md"]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_the_docs_have_examples_to_run():
    assert sum(len(python_blocks(p)) for p in DOCS) >= 4


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)], ids=lambda p: str(p.relative_to(REPO)))
def test_python_examples_run_as_written(path, capsys):
    namespace = {"__name__": "__doc_example__"}
    for i, block in enumerate(python_blocks(path)):
        exec(compile(block, f"{path.name}[python block {i}]", "exec"), namespace)   # noqa: S102 - our own docs

"""The notebooks are built from notebooks/build_notebooks.py (reviewable Python); the committed .ipynb files must be
exactly what it writes, so an edit made in one place only cannot slip in. Executing them is tests/test_notebooks.py."""
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def build():
    pytest.importorskip("nbformat")
    spec = importlib.util.spec_from_file_location("build_notebooks", REPO / "notebooks" / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cells(path: Path) -> list[tuple[str, str, str]]:
    return [(c["id"], c["cell_type"], "".join(c["source"])) for c in json.loads(path.read_text())["cells"]]


def test_the_committed_notebooks_are_what_the_build_script_writes(build, tmp_path, capsys):
    build.main(["--out", str(tmp_path)])
    assert sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb")) == sorted(build.NOTEBOOKS)
    for name in build.NOTEBOOKS:
        assert cells(REPO / "notebooks" / name) == cells(tmp_path / name), (
            f"notebooks/{name} differs from build_notebooks.py: edit the script and run it")


def test_each_notebook_starts_with_its_install_cell(build, tmp_path, capsys):
    build.main(["--out", str(tmp_path)])
    extras = {"01_quickstart.ipynb": "test", "02_hypenet_halo.ipynb": "all", "03_ldl_forecasting.ipynb": "forecast",
              "04_cpmobius.ipynb": "rl", "05_latentchem.ipynb": "chem", "06_agents.ipynb": "agents"}
    for name, extra in extras.items():
        _, kind, text = cells(tmp_path / name)[2]
        assert kind == "code" and f'f"{{JAXSUITE_SOURCE}}[{extra}]"' in text
        assert 'os.environ.get("JAXSUITE_SOURCE", "")' in text        # no made-up default before publication
        assert "colab-badge" not in cells(tmp_path / name)[0][2]


def test_a_public_repository_url_adds_the_colab_badge_and_the_default_install_source(build, tmp_path, capsys):
    build.main(["--repository-url", "https://github.com/some-org/jaxsuite", "--out", str(tmp_path)])
    first, _, install = cells(tmp_path / "04_cpmobius.ipynb")[:3]
    assert first[2].startswith("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                               "(https://colab.research.google.com/github/some-org/jaxsuite/blob/main/notebooks/"
                               "04_cpmobius.ipynb)\n\n# CPMobius")
    assert 'os.environ.get("JAXSUITE_SOURCE", "git+https://github.com/some-org/jaxsuite")' in install[2]
    with pytest.raises(ValueError, match="https://github.com/<owner>/<name>"):
        build.main(["--repository-url", "https://gitlab.com/some-org/jaxsuite", "--out", str(tmp_path)])

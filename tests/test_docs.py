"""The docs cannot rot: every `python` block of the guides, of Getting started and of the README runs
as written (page by page, in one namespace, in a fresh folder; the README's "images/" is the bundled
sample), and every generated table equals what its results file gives."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vizneuron.samples import SAMPLE_DIR

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^(?P<before>[^\n]*)\n```python\n(?P<code>.*?)^```", re.M | re.S)
NO_RUN = "<!-- no-run:"
PAGES = [ROOT / "docs" / "getting-started.md", *sorted((ROOT / "docs" / "guides").glob("*.md"))]
RUNNABLE = [page for page in PAGES if "```python" in page.read_text()] + [ROOT / "README.md"]


def code_blocks(page: Path) -> tuple[list[str], list[str]]:
    """The page's python blocks to run, and the reasons given for those it skips."""
    runs, skipped = [], []
    for match in BLOCK.finditer(page.read_text()):
        before = match.group("before").rsplit("\n", 1)[-1]
        if before.startswith(NO_RUN):
            skipped.append(before[len(NO_RUN):].strip(" ->"))
        else:
            runs.append(match.group("code"))
    return runs, skipped


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: p.stem)
def test_the_pages_python_blocks_run_as_written(page, tmp_path, monkeypatch):
    runs, skipped = code_blocks(page)
    assert all(skipped), f"{page.name}: a no-run block must say why"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for number, code in enumerate(runs, 1):
        if page.name == "README.md":  # its examples name a folder of the reader's; here, the bundled sample
            code = code.replace('"images/"', repr(str(SAMPLE_DIR)))
        try:
            exec(compile(code, f"{page.name} block {number}", "exec"), namespace)  # noqa: S102 (our own docs)
        except Exception as err:
            raise AssertionError(f"{page.relative_to(ROOT)}, python block {number} fails:\n{code}") from err


def test_block_extraction_sees_runnable_and_skipped_blocks(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("text\n```python\nx = 1\n```\n<!-- no-run: needs a cluster -->\n```python\ny\n```\n"
                    "```bash\nls\n```\n")
    assert code_blocks(page) == (["x = 1\n"], ["needs a cluster"])


def test_every_generated_table_matches_its_results_file():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "tables.py"), "--check"], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_the_site_builds_strictly_and_fetches_nothing(tmp_path):
    """`mkdocs build --strict` (as CI runs it) passes, and no page loads a font, script or stylesheet
    from the network: the site works offline."""
    pytest.importorskip("mkdocs", reason="the docs extra builds the site: pip install -e '.[docs]'")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    pages = list(tmp_path.rglob("*.html"))
    assert len(pages) >= 20
    remote = re.compile(r"<(?:script|link|img)[^>]+(?:src|href)=\"(?:https?:)?//", re.I)
    for page in pages:
        found = remote.search(page.read_text())
        assert not found, f"{page.relative_to(tmp_path)} fetches {found.group(0)}"
    api = (tmp_path / "reference" / "api" / "index.html").read_text()
    assert "RenderConfig" in api and "train_sae" in api  # the API reference came from the docstrings
    assert "vizneuron sae train" in (tmp_path / "reference" / "cli" / "index.html").read_text()  # and the CLI's

"""The README and the guides in doc/ are valid reStructuredText (as PyPI and GitHub render them)."""

import io
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.rst", *sorted((ROOT / "doc").glob("*.rst"))]


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_the_document_is_valid_restructuredtext(path):
    docutils_core = pytest.importorskip("docutils.core", reason="pip install docutils (the test extra)")
    pytest.importorskip("pygments", reason="pip install Pygments (the test extra)")
    messages = io.StringIO()
    docutils_core.publish_doctree(
        path.read_text(encoding="utf-8"), source_path=str(path),
        settings_overrides={"warning_stream": messages, "report_level": 1, "halt_level": 5},
    )
    assert messages.getvalue() == ""

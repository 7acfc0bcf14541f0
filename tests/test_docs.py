"""The documentation site builds with Sphinx, warnings as errors, without executing the notebooks."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("numpydoc")
pytest.importorskip("myst_nb")

pytestmark = pytest.mark.slow   # skipped by the fast tier (pytest -m "not slow"); CI runs it

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_without_warnings(tmp_path):
    src = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", src, ignore=shutil.ignore_patterns("_build", "_notebooks", "generated"))
    env = dict(os.environ, MOESTAT_ROOT=str(ROOT), MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    out = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
                          str(src), str(tmp_path / "html")], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-5000:]
    html = tmp_path / "html"
    # every notebook is rendered with its stored figures, and the API pages come from the docstrings
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        page = (html / "_notebooks" / (nb.stem + ".html")).read_text(encoding="utf-8")
        assert "<img" in page, nb.stem
    api = (html / "api" / "generated" / "moestat.plot.experts.html").read_text(encoding="utf-8")
    assert "Fitted expert means over one covariate" in api and "Examples" in api
    assert (html / "theory.html").exists() and (html / "getting_started.html").exists()

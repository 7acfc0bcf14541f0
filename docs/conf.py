"""Sphinx configuration of the moestat documentation (build: ``sphinx-build -W -b html docs docs/_build/html``)."""
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("MOESTAT_ROOT", HERE.parent))
sys.path.insert(0, str(ROOT))

# the notebooks are rendered from copies (with their stored outputs; never re-executed)
_nb = HERE / "_notebooks"
_nb.mkdir(exist_ok=True)
for src in sorted((ROOT / "notebooks").glob("*.ipynb")):
    shutil.copyfile(src, _nb / src.name)

project = "moestat"
author = "the moestat developers"
copyright = "2026, the moestat developers"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.mathjax", "numpydoc", "myst_nb"]
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "alabaster"
html_title = "moestat"
# markdown pages written for GitHub link to files outside the site; those links stay plain text
suppress_warnings = []

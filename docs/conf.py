"""Sphinx configuration of the API reference, built offline by ``make docs`` into ``site/``.

The pages are generated from the docstrings (autodoc, Google style through napoleon). Nothing is
fetched at build or reading time: no intersphinx inventories, no web fonts, and MathJax is
served from the copy that the ``django-static-mathjax`` package ships.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

project = "nce"
author = "the nce authors"
copyright = "the nce authors, MIT license"
release = version = "0.1.0"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]

autodoc_member_order = "bysource"
# extra_repr is torch.nn.Module's printing hook, documented by torch.
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    "exclude-members": "extra_repr",
}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = ["Shape"]
napoleon_use_rtype = False

html_theme = "furo"
html_title = "nce API reference"
html_static_path: list[str] = []
templates_path: list[str] = []
exclude_patterns = ["_build", "img"]

# MathJax 3 (SVG output: no font files) from the local package, copied next to the pages.
MATHJAX_FILE = "tex-svg-full.js"
mathjax_path = MATHJAX_FILE


def _mathjax_source() -> Path:
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the docs need the package django-static-mathjax: pip install '.[docs]'")
    return Path(next(iter(spec.submodule_search_locations))) / "static/mathjax/es5" / MATHJAX_FILE


def _copy_mathjax(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        shutil.copyfile(_mathjax_source(), Path(app.outdir) / "_static" / MATHJAX_FILE)


def setup(app):
    _mathjax_source()  # fail early, before the build, when the package is missing
    app.connect("build-finished", _copy_mathjax)

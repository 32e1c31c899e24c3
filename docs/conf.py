"""Sphinx configuration for daemonctx's documentation.

Build (warnings are errors):

    pip install -e '.[docs]'
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The pages are Markdown (MyST), so they read the same on a code host as on the
site; the API reference is generated from the docstrings.
"""

from __future__ import annotations

import os
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)  # document this checkout, installed or not

import daemonctx  # noqa: E402

project = "daemonctx"
author = "daemonctx developers"
copyright = f"{time.strftime('%Y')}, {author}"
release = daemonctx.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# -- MyST: the Markdown pages are used as they are ------------------------------------------
myst_enable_extensions = [
    "colon_fence",  # ::: fences for notes
    "deflist",  # pidfiles.md's API entries are definition lists
]
myst_heading_anchors = 3  # [Errors](#errors) and [x](page.md#section) resolve to headings

# -- autodoc --------------------------------------------------------------------------------
# The modules use ``from __future__ import annotations`` and import the names their
# annotations use only under ``TYPE_CHECKING = False`` (start-up time: see DESIGN.md),
# so those annotations cannot be evaluated here. Keep them out of the signatures and
# show them, as written, next to the parameters the docstrings describe.
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
}
autodoc_inherit_docstrings = True
nitpicky = False  # annotation names such as PathArg or FrameType have no target to link to

# -- HTML -----------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"daemonctx {release}"
html_static_path: list[str] = []

"""Sphinx configuration for daemonctx's documentation.

Build (warnings are errors):

    pip install -e '.[docs]'
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The pages are Markdown (MyST), so they read the same on a code host as on the
site; the API reference is generated from the docstrings.
"""

from __future__ import annotations

import os
import re
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
# annotations use only under ``TYPE_CHECKING = False`` (start-up time: see "The start-up
# import rule" in docs/architecture.md), so those annotations cannot be evaluated here.
# Keep them out of the signatures and show them, as written, next to the parameters the
# docstrings describe.
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


# -- viewcode's [docs] links ----------------------------------------------------------------
# On a source page, viewcode builds every object's "[docs]" link from one module name:
# the one under which the first object of that file was documented. Some of our files
# have objects documented under ``daemonctx`` (``daemonctx.status``) and others under
# their own module (``daemonctx.control.parse_signal``), so those links named anchors
# that do not exist. Point each link at the object's entry in the API reference, and
# warn (an error with -W) about a link that still leads nowhere.
_BACKLINK = re.compile(
    r'(<div class="viewcode-block" id="(?P<name>[^"]+)">\s*'
    r'<a class="viewcode-back" href=")(?P<href>[^"#]*)#(?P<anchor>[^"]*)(")'
)


def _fix_viewcode_backlinks(app, pagename, templatename, context, doctree):
    if not pagename.startswith("_modules/") or "body" not in context:
        return
    from sphinx.util import logging as sphinx_logging

    module = pagename[len("_modules/") :].replace("/", ".")
    objects = app.env.get_domain("py").objects

    def fix(match: re.Match[str]) -> str:
        name, anchor = match["name"], match["anchor"]
        # The object as its own module names it (also autodoc's ``:canonical:`` alias
        # of an object documented under ``daemonctx``), else viewcode's guess.
        for fullname in (f"{module}.{name}", anchor):
            entry = objects.get(fullname)
            if entry is not None:
                href = app.builder.get_relative_uri(pagename, entry.docname)
                return f"{match[1]}{href}#{entry.node_id}{match[5]}"
        sphinx_logging.getLogger("daemonctx.docs").warning(
            "viewcode: no documented object for [docs] of %s.%s (link to #%s)",
            module, name, anchor, location=pagename,
        )
        return match[0]

    context["body"] = _BACKLINK.sub(fix, context["body"])


def setup(app):
    app.connect("html-page-context", _fix_viewcode_backlinks)

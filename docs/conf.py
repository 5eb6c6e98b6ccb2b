"""Sphinx configuration: numpydoc API reference, sphinx-gallery from ../examples."""

import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # document the checkout, not an installed copy
sys.path.insert(0, str(HERE / "sphinxext"))

import sk_deepunsup  # noqa: E402

project = "sk-deepunsup"
author = "the sk-deepunsup developers"
copyright = "the sk-deepunsup developers, BSD-3-Clause"
release = sk_deepunsup.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "**/*.codeobj.json"]
root_doc = "index"
default_role = "literal"

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

intersphinx_mapping = {}  # offline builds: no inventories are fetched

html_theme = "pydata_sphinx_theme"
html_title = f"sk-deepunsup {release}"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False
html_css_files = ["custom.css"]
# Pages without sub-pages need no left navigation column.
html_sidebars = {name: [] for name in ("index", "install", "benchmarks", "developer", "api")}


# Shapes such as "(n_features_in_,)" are quoted as scikit-learn's docstrings quote
# them: in reStructuredText a bare name ending in "_" is a link.
_SHAPE_NAME = re.compile(r"(?<![`\w])(n_[a-z_]*[a-z]_)(?=[,)])")


def _quote_shape_names(app, what, name, obj, options, lines):
    lines[:] = [_SHAPE_NAME.sub(r"`\1`", line) for line in lines]


def _skip_plain_class_attributes(app, what, name, obj, skip, options):
    # A class-level constant (str, number, tuple) is an implementation detail, not API;
    # fitted attributes are documented in each class's Attributes section.
    if what == "class" and isinstance(obj, (str, int, float, tuple, type(None))):
        return True
    return None


def setup(app):
    app.connect("autodoc-process-docstring", _quote_shape_names, priority=400)
    app.connect("autodoc-skip-member", _skip_plain_class_attributes)


# -- gallery ------------------------------------------------------------------
# Examples on scikit-learn's bundled data that finish in well under a minute run
# at every build; the others (real data sets, or minutes of CPU) are shown with
# the output stored in their docstring. SKDU_GALLERY_ALL=1 runs every example
# that needs no external data set.
QUICK = ["anomalous_digits", "sample_digits", "sample_images", "inspect_digits"]
BUNDLED = QUICK + ["cluster_digits", "map_digits", "choose_n_clusters"]
_run = BUNDLED if os.environ.get("SKDU_GALLERY_ALL") else QUICK
_pattern = "/(" + "|".join(re.escape(name) for name in _run) + r")\.py$"


sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": _pattern,
    "image_scrapers": ("skdu_gallery.png_scraper",),
    "reset_modules": ("matplotlib", "skdu_gallery.set_file"),
    "reset_modules_order": "both",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "min_reported_time": 1,
    "within_subsection_order": "FileNameSortKey",
    "plot_gallery": "True",
    "write_computation_times": True,
}

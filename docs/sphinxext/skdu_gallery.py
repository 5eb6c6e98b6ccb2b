"""Gallery helpers for the docs build (kept out of conf.py so sphinx can pickle them)."""

import shutil
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def png_scraper(block, block_vars, gallery_conf):
    """Collect figures as sphinx-gallery's matplotlib scraper does, or PNG files written.

    An example that saves its figure to a PNG file and closes it leaves nothing for
    the matplotlib scraper; the PNG files it wrote into its folder are moved into
    the gallery instead. Written PNG files are removed from the examples folder in
    either case.
    """
    import matplotlib.pyplot as plt
    from sphinx_gallery.scrapers import figure_rst, matplotlib_scraper

    written = sorted(Path(block_vars["src_file"]).parent.glob("*.png"))
    if plt.get_fignums():
        for path in written:
            path.unlink()
        return matplotlib_scraper(block, block_vars, gallery_conf)
    paths = []
    for path, target in zip(written, block_vars["image_path_iterator"]):
        shutil.move(str(path), target)
        paths.append(target)
    return figure_rst(paths, gallery_conf["src_dir"])


def set_file(gallery_conf, fname, when):
    """Give the example a ``__file__``, as ``python examples/NAME.py`` does.

    sphinx-gallery runs the code without one; examples that locate files beside
    themselves read it. Set as a builtin for the run, removed afterwards.
    """
    import builtins

    if when == "before":
        builtins.__file__ = str(EXAMPLES / Path(fname).name)
    elif hasattr(builtins, "__file__"):
        del builtins.__file__

"""nbval settings for the notebooks: which output types are never compared.

stderr carries warnings and progress-bar rates that change between versions and machines;
widget views carry random model ids; text/html is a second rendering of text/plain (tables,
progress bars). Cells marked `# NBVAL_CHECK_OUTPUT` are compared on the rest (stdout,
text/plain, ...). Images are never compared by nbval.
"""

SKIP_COMPARE = (
    "stderr",
    "application/vnd.jupyter.widget-view+json",
    "text/html",
    "application/javascript",
)


def pytest_collectstart(collector):
    path = getattr(collector, "path", None)
    if path is not None and path.suffix == ".ipynb" and hasattr(collector, "skip_compare"):
        collector.skip_compare = tuple(collector.skip_compare) + SKIP_COMPARE

"""The lab's figures are shown as images by Jupyter, with no ``%matplotlib inline``.

lab_utils draws on matplotlib Figures made without pyplot. IPython only knows how to turn
such a Figure into a PNG once the inline backend is active; until then a notebook printed
"<Figure size 800x400 with 1 Axes>" instead of the plot (seen in JupyterLab, see
tests/test_browser.py). IPython's own display formatter is the oracle here.
"""

from __future__ import annotations

import pytest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_parameter_counts_figure_has_a_png_representation():
    formatters = pytest.importorskip("IPython.core.formatters")
    from matplotlib.figure import Figure

    from lab_utils.plots import plot_parameter_counts

    fig = plot_parameter_counts(["gpt2-small"])
    assert isinstance(fig, Figure)  # what the notebooks' test cells check
    data, _ = formatters.DisplayFormatter().format(fig)
    assert "image/png" in data, f"only {sorted(data)}: the notebook would show the Figure's repr"
    assert data["image/png"].startswith(PNG_SIGNATURE)

"""Figures are optional: matplotlib comes with the ``plot`` extra (``pip install nce[plot]``), and
a command that draws says so, with exit status 2, when it is missing."""

from __future__ import annotations

from nce.cli._table import InputError

INSTALL_HINT = "pip install nce[plot]"


def pyplot(needed_by: str):
    """``matplotlib.pyplot`` on the non-interactive Agg backend.

    Args:
        needed_by: what draws, for the message (``"nce study"``).

    Raises:
        InputError: matplotlib is not installed; the message names the extra to install.
    """
    try:
        import matplotlib
    except ImportError as err:
        raise InputError(
            f"{needed_by} draws a figure and needs matplotlib, which is not installed: "
            f"{INSTALL_HINT}"
        ) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt

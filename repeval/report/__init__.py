"""The HTML comparison report: ``build_report(workdir, out)`` (``repeval report``).

``scores`` turns stored scores into tables, ``paper`` sets the paper's numbers beside
them, ``format`` and ``data_status`` say how numbers and data origins read, ``figures``
draws the pictures, and ``build`` assembles it all into ``templates/report.html.j2``.
"""

from repeval.report.build import build_report

__all__ = ["build_report"]

"""The HTML comparison report: ``build_report(workdir, out)`` (``repeval report``).

``tables`` turns stored scores into formatted tables and the paper comparison, ``figures``
draws the pictures, ``build`` assembles them into ``templates/report.html.j2``.
"""

from repeval.report.build import build_report

__all__ = ["build_report"]

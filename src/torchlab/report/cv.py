"""The page of a cross-validation (or of repeated seeds): torchlab's scores beside the
baseline's, fold by fold, and the verdict of the corrected t-test (see ``stats``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from torchlab.report.html import environment_for_templates

UNITS = {"cv": "fold", "backtest": "fold", "seeds": "seed"}


def write_cv_report(folder: Path, summary: dict[str, Any]) -> Path:
    """Write ``report.html`` into a cross-validation folder from its ``summary.json``."""
    from torchlab import __version__

    html = (
        environment_for_templates()
        .get_template("cv_report.html.j2")
        .render(
            s=summary,
            unit=UNITS[summary["kind"]],
            name=f"{summary['recipe']}: {summary['kind']}",
            run_dir=folder,
            status="completed",
            created=datetime.now().isoformat(timespec="seconds"),
            version=__version__,
        )
    )
    path = folder / "report.html"
    path.write_text(html)
    return path

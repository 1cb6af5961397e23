"""Explanation reports: what the recommender did for a user (or a cohort) and why.

A report is built once as pydantic data (``build``; the schema in ``schema`` is published
with ``mtrec report --schema``; cohort aggregates in ``cohort``) and rendered from it
(``render``) as JSON, Markdown (for tickets) or a self-contained HTML page (Jinja2 templates
in ``templates/``, ``charts`` as base64 PNG).
"""

from agent.errors import ReportError
from agent.report.build import DEFAULT_SAMPLE, build_report, user_report
from agent.report.cohort import cohort_report, distribution, intra_list_diversity
from agent.report.render import (
    FORMATS,
    md_escape,
    output_path,
    render,
    report,
    write_report,
)
from agent.report.schema import SCHEMA_VERSION, Report, UserReport, report_schema

__all__ = [
    "DEFAULT_SAMPLE",
    "FORMATS",
    "SCHEMA_VERSION",
    "Report",
    "ReportError",
    "UserReport",
    "build_report",
    "cohort_report",
    "distribution",
    "intra_list_diversity",
    "md_escape",
    "output_path",
    "render",
    "report",
    "report_schema",
    "user_report",
    "write_report",
]

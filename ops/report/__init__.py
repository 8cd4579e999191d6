"""Reports (考核报表) on the command line: the ranked KPI table and its charts written as files."""

from ops.report.charts import chart_files
from ops.report.cli import report_command

__all__ = ["chart_files", "report_command"]

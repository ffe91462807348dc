"""Report: runs from the store become a comparison report; reads only bench.store and bench.spec."""

from bench.report.collect import CellResult, Results, collect
from bench.report.sections.curves import fetch_histories, pair_figures
from bench.report.sections.leaderboard import leaderboard
from bench.report.writer import load_report_matrix, report_files, write_report

__all__ = [
    "CellResult",
    "Results",
    "collect",
    "fetch_histories",
    "leaderboard",
    "load_report_matrix",
    "pair_figures",
    "report_files",
    "write_report",
]

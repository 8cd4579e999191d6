"""``gridloop bench [--quick] [--only NAME...] [--json FILE]``: the whole benchmark suite in one run."""

from __future__ import annotations

from pathlib import Path

import click

from ops.bench.suite import FULL_ONLY, SECTIONS, report_json, report_markdown, run_suite
from ops.logs import configure_logging


@click.command(name="bench")
@click.option("--quick", is_flag=True, help="Smaller sizes and fewer repeats (minutes, not a quarter hour).")
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="NAME[,NAME...]",
    help=f"Run only these sections (repeatable or comma-separated): {', '.join(SECTIONS)}. "
    f"{', '.join(FULL_ONLY)} runs in full mode or when named.",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the run as JSON."
)
def bench_command(quick: bool, only: tuple[str, ...], json_path: Path | None) -> None:
    """Each gridloop path against its raw baseline, side by side: medians, ratios, p99s, the machine, the targets."""
    names = [name for given in only for name in given.replace(",", " ").split()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: not one of {', '.join(SECTIONS)}", param_hint="--only")
    configure_logging("warning")  # the rows' own clients log at info; stdout is the report alone
    report = run_suite(quick, names)
    click.echo(report_markdown(report))
    if json_path is not None:
        json_path.write_text(report_json(report) + "\n", encoding="utf-8")

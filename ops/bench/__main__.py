"""``python -m ops.bench [--quick]``: run the benchmarks and print a Markdown table.

``python -m ops.bench --events 1000000 [--processes 2] [--profile]``: the blue/green rebuild of every view over
a simulated log of that many positions alone (the log is simulated once and kept in var/bench).
"""

from __future__ import annotations

import argparse

from ops.bench import markdown, run
from ops.logs import configure_logging

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m ops.bench")
    parser.add_argument("--quick", action="store_true", help="Smaller sizes and fewer repeats.")
    parser.add_argument("--events", type=int, default=None, help="Only the rebuild, over this many log positions.")
    parser.add_argument("--processes", type=int, default=2, help="Processes the rebuild builds the views in.")
    parser.add_argument("--profile", action="store_true", help="Profile one more build, in one process.")
    args = parser.parse_args()
    configure_logging("warning")  # on stderr: stdout is the table alone
    if args.events is not None:
        from ops.bench.rebuild import blue_green_rebuild

        print(markdown([blue_green_rebuild(args.events, groups=args.processes, profile=args.profile)]))
    else:
        print(markdown(run(quick=args.quick)))

"""``python -m ops.bench [--quick]``: run the benchmarks and print a Markdown table."""

from __future__ import annotations

import sys

from ops.bench import markdown, run
from ops.logs import configure_logging

if __name__ == "__main__":
    configure_logging("warning")  # on stderr: stdout is the table alone
    print(markdown(run(quick="--quick" in sys.argv[1:])))

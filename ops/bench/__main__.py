"""``python -m ops.bench [--quick]``: run the benchmarks and print a Markdown table."""

from __future__ import annotations

import sys

from ops.bench import markdown, run

if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv[1:])))

"""What-if (推演): a recorded period replayed through another dispatch policy, compared on KPIs."""

from ops.whatif.command import whatif_command
from ops.whatif.compare import whatif
from ops.whatif.report import Kpis, WhatIfReport

__all__ = ["Kpis", "WhatIfReport", "whatif", "whatif_command"]

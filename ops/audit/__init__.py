"""`gridloop audit`: what an auditor asks of the history (a case's trace, accountability, tamper evidence)."""

from __future__ import annotations

import click

from ops.audit.accountability import accountability_command
from ops.audit.case import case_command
from ops.audit.verify import verify_command


@click.group(name="audit")
def audit_group() -> None:
    """Audit the history: a case's trace (痕迹), accountability (事事有人办), tamper evidence."""


audit_group.add_command(case_command)
audit_group.add_command(accountability_command)
audit_group.add_command(verify_command)

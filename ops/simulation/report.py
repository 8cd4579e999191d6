"""What a simulation run did: a mutable tally while it runs, a frozen report at the end."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from engine.application import CommandResult
from engine.commands import Command
from engine.errors import GridloopError
from engine.process import Processes, ProcessManager

KEPT_REFUSALS = 5
"""How many refusal texts a report keeps (a refusal is a simulator bug; the first few say enough)."""


@dataclass(frozen=True)
class SimulationReport:
    """One simulation run in numbers; the same inputs on a fresh store give an equal report."""

    preset: str
    seed: int
    days: int
    start: datetime
    end: datetime
    commands_executed: int  # accepted by app.execute, including repeats of already recorded commands
    commands_repeated: int  # of those, duplicates of a command id already recorded (nothing new written)
    events_recorded: int  # log positions written by this run: domain events plus one receipt per new command
    first_position: int  # the log's last position before the run
    last_position: int  # and after it
    patrols: int
    late_uploads: int  # commands uploaded with an occurred_at earlier than the clock (phone offline)
    cases_reported: Mapping[str, int]  # by source
    cases_by_status: Mapping[str, int]  # final status of the cases reported in this run
    rejections: int
    merges: int
    returns: int
    reworks: int  # verifications that failed (返工)
    extensions_requested: int
    extensions_granted: int
    extensions_denied: int
    suspensions: int
    escalations: int  # by the supervisor and by people (群众催办)
    call_backs: int
    not_fixed: int  # call-backs answering "not fixed", which reopen the case
    refused_commands: int  # should be 0: the simulator only issues legal commands
    refusals: tuple[str, ...]  # the first few refusal texts
    dispatch: str  # the dispatch policy that ran (engine.dispatch)
    policy_commands: int  # commands the dispatch policy and the supervisor issued and the engine accepted
    reassignments: int  # 改派 by the policy: sign-for timeouts, workers going off duty
    warnings: Mapping[int, int]  # the supervisor's deadline warnings by threshold (50, 75, 100 %)
    escalations_by_level: Mapping[int, int]  # escalations by the level reached (1 grid leader … 5 city)
    policy_refusals: int  # should be 0: policy commands the engine refused (the case had moved on)
    policy_refusal_texts: tuple[str, ...]  # the first few

    def as_dict(self) -> dict[str, object]:
        """Plain values (ISO times) for JSON and the command line."""
        values = asdict(self)
        values["start"] = self.start.isoformat()
        values["end"] = self.end.isoformat()
        values["refusals"] = list(self.refusals)
        values["policy_refusal_texts"] = list(self.policy_refusal_texts)
        return values


class LogTally(ProcessManager):
    """Counts what the log says the policies and people did in this run; observes only, issues nothing."""

    name: ClassVar[str] = "simulation-tally"
    version: ClassVar[str] = "1"

    def __init__(self, after: int) -> None:
        self.after = after
        self.counts: Counter[str] = Counter()
        self.warnings: Counter[int] = Counter()
        self.levels: Counter[int] = Counter()

    def observe(self, event: Any, position: int) -> None:
        if position <= self.after:
            return
        name = type(event).__name__
        if name == "DeadlineWarned":
            self.warnings[event.threshold] += 1
        elif name == "Escalated":
            self.levels[event.level] += 1
            self.counts["escalations"] += 1
        elif name == "Reassigned" and str(event.actor).startswith("policy:"):
            self.counts["reassignments"] += 1


@dataclass
class Tally:
    """Counters the simulator updates as commands succeed."""

    commands: int = 0
    repeated: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    refusal_count: int = 0
    refusal_texts: list[str] = field(default_factory=list)

    def executed(self, result: CommandResult) -> None:
        self.commands += 1
        self.repeated += int(result.duplicate)

    def refused(self, command: Command, error: GridloopError) -> None:
        self.refusal_count += 1
        if len(self.refusal_texts) < KEPT_REFUSALS:
            self.refusal_texts.append(f"{command.name} {command.command_id}: {error}")

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] += n

    def report(
        self, *, preset: str, seed: int, days: int, start: datetime, end: datetime,
        positions: tuple[int, int], statuses: Mapping[str, int], dispatch: str, processes: Processes, log: LogTally,
    ) -> SimulationReport:  # fmt: skip
        n = self.counts + log.counts
        refused = [
            f"{r.manager} {r.command.name if r.command else '(no decision)'} "
            f"{r.command.command_id if r.command else ''}: {r.error}"
            for r in processes.refusals
        ]
        return SimulationReport(
            preset=preset, seed=seed, days=days, start=start, end=end,
            commands_executed=self.commands, commands_repeated=self.repeated,
            events_recorded=positions[1] - positions[0], first_position=positions[0], last_position=positions[1],
            patrols=n["patrols"], late_uploads=n["late_uploads"],
            cases_reported=dict(sorted(self.sources.items())), cases_by_status=dict(sorted(statuses.items())),
            rejections=n["rejections"], merges=n["merges"], returns=n["returns"], reworks=n["reworks"],
            extensions_requested=n["extensions_requested"], extensions_granted=n["extensions_granted"],
            extensions_denied=n["extensions_denied"], suspensions=n["suspensions"], escalations=n["escalations"],
            call_backs=n["call_backs"], not_fixed=n["not_fixed"],
            refused_commands=self.refusal_count, refusals=tuple(self.refusal_texts),
            dispatch=dispatch, policy_commands=processes.issued, reassignments=n["reassignments"],
            warnings=dict(sorted(log.warnings.items())), escalations_by_level=dict(sorted(log.levels.items())),
            policy_refusals=len(refused), policy_refusal_texts=tuple(refused[:KEPT_REFUSALS]),
        )  # fmt: skip

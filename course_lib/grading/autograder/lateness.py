"""Late submissions: how late, and what it costs (``--late-penalty``, ``--late-cap``, ``--late-cutoff``).

The time of submission is nbgrader's (``timestamp.txt``, written from the LMS download's file names
by :mod:`~course_lib.grading.autograder.lms`), the due date is the assignment's in the gradebook
(``--due``, or ``nbgrader db assignment add --duedate``) plus the student's extension, if any
(``Gradebook.grant_extension``): nbgrader's own ``total_seconds_late``.

The penalty, as in Canvas's late policy, takes a share of the assignment's points (not of the
student's score), and never makes a score negative:

* ``none`` (the default): no penalty; the lateness is still shown;
* ``zero``: any lateness costs every point (nbgrader's ``LateSubmissionPlugin`` method ``zero``);
* ``P%/day`` (or ``P%/hour``): P% of the points for every started day (hour) late, at most
  ``--late-cap`` percent in all (default 100);
* with ``--late-cutoff DAYS``, a submission more than DAYS days late scores 0 whatever the rule.

It is applied when grades are exported, to the score at that time (hand-graded answers included),
so a score changed by hand later gets the right penalty; the gradebook keeps the raw score.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

PERIODS = {"day": 86400.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*/\s*(day|hour)\s*$")


@dataclass(frozen=True)
class LatePolicy:
    """``rate``: the share of the points per started ``period`` (seconds) late; ``cap``: the most it
    takes in all (a share); ``cutoff``: seconds late after which the score is 0 (``None``: never)."""

    rate: float = 0.0
    period: float = PERIODS["day"]
    cap: float = 1.0
    cutoff: float | None = None

    def penalty(self, score: float, max_score: float, seconds_late: float) -> float:
        """Points taken from ``score`` for a submission ``seconds_late`` late (never more than ``score``)."""
        if seconds_late <= 0:
            return 0.0
        if self.cutoff is not None and seconds_late > self.cutoff:
            return score
        share = min(self.cap, self.rate * math.ceil(seconds_late / self.period))
        return min(score, round(share * max_score, 6))


def parse_policy(spec: str = "none", cap: str = "100%", cutoff_days: float | None = None) -> LatePolicy:
    """The policy of the command-line options; a :class:`ValueError` says what is wrong."""
    cap_share = _percent(cap, "--late-cap")
    if cutoff_days is not None and cutoff_days < 0:
        raise ValueError(f"--late-cutoff {cutoff_days}: a number of days, 0 or more")
    cutoff = None if cutoff_days is None else cutoff_days * PERIODS["day"]
    text = spec.strip().lower()
    if text == "none":
        return LatePolicy(cap=cap_share, cutoff=cutoff)
    if text == "zero":
        return LatePolicy(cap=1.0, cutoff=0.0)
    found = _RATE.match(text)
    if not found:
        raise ValueError(f"--late-penalty {spec!r}: expected none, zero, or a rate such as 10%/day or 2%/hour")
    return LatePolicy(rate=float(found.group(1)) / 100, period=PERIODS[found.group(2)], cap=cap_share, cutoff=cutoff)


def _percent(text: str, option: str) -> float:
    found = re.match(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$", text)
    if not found or float(found.group(1)) > 100:
        raise ValueError(f"{option} {text!r}: expected a percentage from 0% to 100%")
    return float(found.group(1)) / 100


def late_days(seconds_late: float) -> int:
    """Started days late (0 when on time): what the export shows."""
    return math.ceil(seconds_late / PERIODS["day"]) if seconds_late > 0 else 0

"""RTF rounds spread over the session, so a slow minute is not mistaken for a regression.

A test marked `@pytest.mark.rtf(repeat=N)` measures its first round when pytest runs it. Its
rounds 2..N run after the main pass, one round at a time over every such test, each round in a
fresh shuffled order (randomized multiple interleaved trials, Abedi & Brecht, ICPE 2017), with the
calibration workload timed between rounds. The N samples of a test then come from N moments of the
machine; back-to-back repeats would share one moment, and a slow minute would turn all of a test's
samples slow together, which a rank test reads as significant.

Later rounds run through pytest's own runtest protocol without reporting (as rerun plugins do):
fixtures are set up and torn down as for any test, the harness records the round's figures, and
the test's reported outcome stays that of its first round. A failure in a later round is kept as a
note on the test and shown in the terminal summary and the report.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from _pytest.runner import runtestprotocol  # the rerun entry point rerun plugins use

if TYPE_CHECKING:
    from .session import CosySession


@dataclass
class RoundPlan:
    """Which tests run in which extra round, in which order (round 2 is index 0)."""

    seed: int
    rounds: list[list[pytest.Item]] = field(default_factory=list)


def after_main_pass(session: pytest.Session, cosy: CosySession) -> None:
    """Rounds 2..N of the RTF tests that passed their first round in this process (on an xdist
    worker: the tests it ran), spread and shuffled so each round samples another moment of the machine."""
    if not cosy.figures:
        return
    by_id = {item.nodeid: item for item in session.items}
    measured = [by_id[f.nodeid] for f in cosy.figures.values()
                if f.rtf and f.outcome == "passed" and f.nodeid in by_id]
    planned = plan(measured, cosy.rtf_repeat, seed=int(time.time()))
    if not planned.rounds:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def say(text: str) -> None:
        if reporter is not None:
            reporter.write_line(f"cosyvoice: {text}")

    def set_round(k: int) -> None:
        cosy.round = k - 1
    run(planned, before_round=lambda k: cosy.calibrate(), after=cosy.calibrate, set_round=set_round,
        say=say, should_stop=lambda: bool(session.shouldstop or session.shouldfail))


def plan(items: Sequence[pytest.Item], repeats: Callable[[pytest.Item], int], seed: int) -> RoundPlan:
    """Rounds 2..max(repeat): every item whose repeat reaches the round, shuffled per round."""
    rng = random.Random(seed)
    wanted = [(it, repeats(it)) for it in items]
    top = max((n for _, n in wanted), default=1)
    out = RoundPlan(seed)
    for k in range(2, top + 1):
        batch = [it for it, n in wanted if n >= k]
        rng.shuffle(batch)
        out.rounds.append(batch)
    return out


def run(plan_: RoundPlan, *, before_round: Callable[[int], None], after: Callable[[], None],
        set_round: Callable[[int], None], say: Callable[[str], None],
        should_stop: Callable[[], bool]) -> None:
    """Run the planned rounds; `set_round(k)` tells the harness which round it is recording."""
    # The item after each one across all rounds: session- and module-scoped fixtures stay set up
    # between rounds (only the very last run tears them down), as between tests of the main pass.
    order = [item for batch in plan_.rounds for item in batch]
    try:
        n = 0
        for index, batch in enumerate(plan_.rounds):
            k = index + 2
            if should_stop():
                say(f"RTF rounds stopped before round {k}: the session is stopping")
                return
            before_round(k)
            say(f"RTF round {k} of {len(plan_.rounds) + 1}: {len(batch)} test(s), shuffled (seed {plan_.seed})")
            set_round(k)
            for item in batch:
                n += 1
                nxt = order[n] if n < len(order) else None
                # The same test next (one RTF test in the session): its own function-scoped fixtures
                # must still be torn down, so the teardown is told its parent comes next.
                # pytest's stub says Item, but teardown only walks nextitem's chain of parents: a Node is what it needs.
                runtestprotocol(item, log=False, nextitem=item.parent if nxt is item else nxt)  # type: ignore[arg-type]
    finally:
        set_round(1)
        after()

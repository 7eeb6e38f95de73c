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

In A/B mode (issue #17) every round of an RTF test is a pair (recording/pairing.py) and a test gets
rounds until its paired verdicts, of RTF and of first-chunk latency, are decided
(`tracking.paired.pairs_wanted` is 0 for both: a verdict, or the caps `--cosy-ab-max-pairs` for the
screen and `--cosy-ab-confirm-pairs` for a candidate's confirmation), and at least its marker's
`repeat`. It is judged only at its looks:
`pairs_wanted` says how many more pairs the next look needs, those rounds run, then it is judged
again (judging after every pair would be optional stopping). A round that gave the test no pair ends
its pairing (the round's note says why); its `repeat` rounds still run.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from _pytest.runner import runtestprotocol  # the rerun entry point rerun plugins use

from .finish import ab_rule
from .tracking import paired
from .tracking.ab import AB_METRICS, pairs_of

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
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def say(text: str) -> None:
        if reporter is not None:
            reporter.write_line(f"cosyvoice: {text}")

    def set_round(k: int) -> None:
        cosy.round = k - 1

    def should_stop() -> bool:
        return bool(session.shouldstop or session.shouldfail)
    if cosy.settings.ab_mode:
        run_adaptive(measured, lambda item, k: ab_rounds_wanted(cosy, item, k), seed=cosy.seed,
                     before_round=lambda k: cosy.calibrate(), after=cosy.calibrate, set_round=set_round,
                     say=say, should_stop=should_stop)
        return
    planned = plan(measured, cosy.rtf_repeat, seed=cosy.seed)
    if planned.rounds:
        run(planned, before_round=lambda k: cosy.calibrate(), after=cosy.calibrate, set_round=set_round,
            say=say, should_stop=should_stop)


def ab_rounds_wanted(cosy: CosySession, item: pytest.Item, k: int) -> int:
    """A/B mode: how many more rounds `item` wants after its round `k` (1: the main pass): its
    marker's `repeat` rounds left, or the pairs its next look needs, whichever is more; no more pairs
    once a round gave it none."""
    fig = cosy.figures.get(item.nodeid)
    repeat_left = max(0, cosy.rtf_repeat(item) - k)
    if fig is None or not fig.pairs or fig.pairs[-1].round != k:
        return repeat_left
    rule = ab_rule(cosy.settings)
    wanted = [paired.pairs_wanted(rule.judge(item.nodeid, pairs)) for metric in AB_METRICS
              if (pairs := pairs_of(fig, metric)).values]
    return max([repeat_left, *wanted])


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


def run_adaptive(items: Sequence[pytest.Item], more: Callable[[pytest.Item, int], int], *, seed: int,
                 before_round: Callable[[int], None], after: Callable[[], None], set_round: Callable[[int], None],
                 say: Callable[[str], None], should_stop: Callable[[], bool]) -> None:
    """Rounds 2, 3, ... while any test wants more, each round shuffled. `more(item, k)` is asked after
    the test's round k once the rounds it last asked for have run, and says how many more it wants."""
    rng = random.Random(seed)
    left = {item.nodeid: more(item, 1) for item in items}
    batch = [item for item in items if left[item.nodeid] > 0]
    rng.shuffle(batch)

    def ran(item: pytest.Item, k: int) -> bool:
        """Counts the round off the test's wish; asks again once it is spent. Whether it wants another."""
        left[item.nodeid] -= 1
        if left[item.nodeid] <= 0:
            left[item.nodeid] = more(item, k)
        return left[item.nodeid] > 0

    k = 2
    try:
        while batch:
            if should_stop():
                say(f"A/B rounds stopped before round {k}: the session is stopping")
                return
            before_round(k)
            say(f"A/B round {k}: {len(batch)} test(s), shuffled (seed {seed})")
            set_round(k)
            upcoming: list[pytest.Item] = []
            for i, item in enumerate(batch[:-1]):
                runtestprotocol(item, log=False, nextitem=batch[i + 1])
                if ran(item, k):
                    upcoming.append(item)
            # The last test of the round: which test runs next (whose fixtures must stay set up) is the
            # first of the next round's, decided before it runs. Whether it goes on itself is known only
            # after it ran: it then joins the next round, never first. Where nothing else follows, its
            # parents stay set up (the session's end tears them down, as after any run).
            last = batch[-1]
            rng.shuffle(upcoming)
            # pytest's stub says Item, but teardown only walks nextitem's chain of parents: a Node is what it needs.
            runtestprotocol(last, log=False, nextitem=upcoming[0] if upcoming else last.parent)  # type: ignore[arg-type]
            if ran(last, k):
                upcoming.insert(rng.randint(1, len(upcoming)) if upcoming else 0, last)
            batch = upcoming
            k += 1
    finally:
        set_round(1)
        after()


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

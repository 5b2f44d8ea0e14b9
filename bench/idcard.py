#!/usr/bin/env python3
"""ID card benchmark: time from a card laid on the reader to a validated identity, through the simulator.

The simulated reader (``tests/hw_sim/idcard_reader.py``) sits on a pty and paces its answers like a
115200-baud line; a read takes ``--read-time`` seconds, like a real SAM. The driver runs its production
polling loop (:meth:`IdCardReader.watch`); the clock starts when the card is placed and stops when
``validate_card`` has returned for it. Cards cycle through the four layouts and are laid down at a random
phase of the poll cycle. Between repetitions the card is taken away and the loop is given time to notice.

Prints the machine, the settings, the raw figures and, as its last line,
``idcard: placed_to_identity_ms_median=M p95=P read_time_ms=R`` where M and P are the placed-to-identity
times *minus* the simulated read time (target: M and P ≤ 300 ms).
"""

from __future__ import annotations

import argparse
import platform
import queue
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import threadcap  # noqa: E402,F401  (--threads N, default 1: per-core figures)

from drivers.idcard.card import IdCard  # noqa: E402
from drivers.idcard.codec import Command  # noqa: E402
from drivers.idcard.reader import BAUD, IdCardReader  # noqa: E402
from drivers.idcard.validate import ValidationResult, validate_card  # noqa: E402
from tests.hw_sim.idcard_reader import SimulatedIdCardReader, sample_cards  # noqa: E402


def percentile(xs: list[float], p: float) -> float:
    if len(xs) < 2:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[int(p) - 1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--read-time", type=float, default=0.2, help="simulated SAM read time, seconds (default 0.2)")
    p.add_argument("--poll-interval", type=float, default=0.1, help="watch() poll interval (default 0.1, production)")
    p.add_argument("--baud", type=int, default=BAUD, help="simulated line speed (0: instant)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    cards = [c for name, c in sample_cards().items() if name != "bad_check_digit"]
    done: queue.Queue[tuple[float, IdCard, ValidationResult]] = queue.Queue()

    def on_card(card: IdCard) -> None:
        result = validate_card(card)
        done.put((time.perf_counter(), card, result))

    print(f"machine: {platform.node()} {platform.machine()}, Python {platform.python_version()}, "
          f"{args.reps} reps, read time {args.read_time * 1000:.0f} ms, poll {args.poll_interval * 1000:.0f} ms, "
          f"line {args.baud or 'instant'} baud")
    totals: list[float] = []
    rng = random.Random(args.seed)
    with SimulatedIdCardReader(read_time=args.read_time, baud=args.baud or None) as sim:
        reader = IdCardReader(sim.port, timeout=1.0, read_timeout=args.read_time + 2.0)
        stop = threading.Event()
        t = threading.Thread(target=reader.watch, args=(on_card, stop), kwargs={"poll_interval": args.poll_interval},
                             daemon=True)
        t.start()
        sim.wait_for(lambda s: s.commands[Command.FIND_CARD] >= 1, 10)
        for i in range(args.reps):
            card = cards[i % len(cards)]
            time.sleep(rng.uniform(0, args.poll_interval))  # people lay cards down at any phase of the poll
            sim.place(card)
            placed = sim.placed_at
            assert placed is not None
            got_at, got, result = done.get(timeout=10)
            if got.id_number != card.id_number or not result.valid:
                print(f"rep {i}: wrong card or invalid result ({result.code})", file=sys.stderr)
                return 1
            totals.append((got_at - placed) * 1000)
            sim.remove()
            # let the loop see the card gone (2 empty polls) before the next one is laid down
            target = sim.count(Command.FIND_CARD) + 3
            sim.wait_for(lambda s, target=target: s.commands[Command.FIND_CARD] >= target, 10)
        stop.set()
        t.join(10)
        errors = reader.stats.card_errors + reader.stats.frame_errors + reader.stats.timeouts

    read_ms = args.read_time * 1000
    net = [x - read_ms for x in totals]
    print(f"placed -> validated identity, raw: median {statistics.median(totals):.1f} ms, "
          f"p95 {percentile(totals, 95):.1f} ms, min {min(totals):.1f} ms, max {max(totals):.1f} ms; errors {errors}")
    print(f"minus the simulated read time ({read_ms:.0f} ms): median {statistics.median(net):.1f} ms, "
          f"p95 {percentile(net, 95):.1f} ms (target <= 300 ms)")
    print(f"idcard: placed_to_identity_ms_median={statistics.median(net):.1f} p95={percentile(net, 95):.1f} "
          f"read_time_ms={read_ms:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m chaos [--quick] [--only kill,fuzz,gateway,soak]` (`make chaos ARGS=...`).

Starts the chaos stack (.local/chaos, Kafka on 19092), runs the chosen parts one after the
other, each with its own topics and worker, stops the stack (only what it started), prints one
table and exits 1 if any line FAILs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable

from chaos import fuzz, gateway, kill, soak
from chaos.report import Report
from chaos.stack import ChaosStack

PARTS = ("kill", "fuzz", "gateway", "soak")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: the whole battery in under 5 minutes")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts to run (default: {','.join(PARTS)})")
    parser.add_argument("--seed", type=int, default=12, help="random seed of loads and kills")
    parser.add_argument("--keep-stack", action="store_true",
                        help="leave the chaos stack running at the end")
    parser.add_argument("--keep-topics", action="store_true",
                        help="keep each part's topics (to look into a FAIL; with --keep-stack)")
    args = parser.parse_args(argv)
    chosen = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        parser.error(f"unknown part {', '.join(unknown)} (choose from {','.join(PARTS)})")
    # Every setting is named by the battery: none of the caller's BOXSYNC_ variables (say, a
    # BOXSYNC_DATABASE_URL) may point a part at the shared stack.
    for name in [name for name in os.environ if name.startswith("BOXSYNC_")]:
        del os.environ[name]

    runs: dict[str, Callable[[ChaosStack, Report], None]] = {
        "kill": lambda s, r: kill.run(s, r, kill.QUICK if args.quick else kill.FULL, args.seed,
                                   args.keep_topics),
        "fuzz": lambda s, r: fuzz.run(s, r, fuzz.QUICK if args.quick else fuzz.FULL, args.seed),
        "gateway": lambda s, r: gateway.run(s, r, gateway.QUICK if args.quick
                                            else gateway.FULL, args.seed),
        "soak": lambda s, r: soak.run(s, r, soak.QUICK if args.quick else soak.FULL, args.seed),
    }
    report = Report()
    stack = ChaosStack()
    began = time.monotonic()
    print(f"chaos: {'quick' if args.quick else 'full'} battery, parts {','.join(chosen)}; "
          "own stack under .local/chaos (Kafka 127.0.0.1:19092)", flush=True)
    try:
        stack.up()
        for part in chosen:
            part_began = time.monotonic()
            print(f"chaos: {part} ...", flush=True)
            try:
                runs[part](stack, report)
            except Exception as exc:
                traceback.print_exc()
                report.check(part, "the part ran to its end", "no error",
                             f"{type(exc).__name__}: {str(exc)[:120]}", False)
            print(f"chaos: {part} took {time.monotonic() - part_began:.0f} s", flush=True)
    finally:
        if not args.keep_stack:
            stack.down()
    print()
    print(f"chaos battery ({'quick' if args.quick else 'full'}, seed {args.seed}, "
          f"{time.monotonic() - began:.0f} s; logs in .local/chaos/logs)")
    print(report.table())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""A Monte Carlo risk sweep on ebbtide: the 99% value at risk of a portfolio under many scenarios.

Every (volatility, correlation) scenario is one task simulating thousands of market paths in plain
Python. The burst of tasks makes the scheduler start Python worker groups in one decision; when the
sweep is done they are shut down back to zero. Progress and the fleet's size are printed as results
arrive, then the worst scenario.

    pip install ./python
    target/release/ebbtide up examples/python/python.toml &      # scheduler + native adapter, no workers yet
    python examples/python/montecarlo.py                          # or --scheduler/--admin elsewhere
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import random
import sys
import time
import urllib.request

from ebbtide import Client

WEIGHTS = [0.4, 0.3, 0.2, 0.1]  # four assets
VALUE = 1_000_000.0


def simulate_portfolio(volatility: float, correlation: float, paths: int, seed: int) -> dict:
    """The portfolio's 99% one-day value at risk under one scenario (correlated normal returns)."""
    rng = random.Random(seed)
    losses = []
    shared_weight, own_weight = math.sqrt(correlation), math.sqrt(1 - correlation)
    for _ in range(paths):
        market = rng.gauss(0, 1)
        ret = sum(w * volatility * (shared_weight * market + own_weight * rng.gauss(0, 1)) for w in WEIGHTS)
        losses.append(-ret * VALUE)
    losses.sort()
    return {"volatility": volatility, "correlation": correlation, "var99": losses[int(0.99 * paths)]}


def fleet(admin: str | None) -> str:
    if not admin:
        return ""
    try:
        with urllib.request.urlopen(f"http://{admin}/status", timeout=2) as r:
            s = json.load(r)
        g = s["groups"]
        return f"  groups: {g['starting']} starting, {g['running']} running, {g['draining']} draining; workers {s['workers']}"
    except OSError:
        return ""


def bar(done: int, total: int, started: float, admin: str | None) -> None:
    width = 30
    filled = width * done // total
    rate = done / max(time.monotonic() - started, 1e-9)
    sys.stdout.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} scenarios  {rate:5.1f}/s{fleet(admin)}   ")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scheduler", default="tcp://127.0.0.1:8516")
    parser.add_argument("--admin", default="127.0.0.1:8517", help="the admin address, to show the fleet ('' to hide)")
    parser.add_argument("--scenarios", type=int, default=8, help="volatilities x correlations, per side (default 8: 64 tasks)")
    parser.add_argument("--paths", type=int, default=20_000, help="market paths per scenario")
    args = parser.parse_args()

    grid = [(0.005 + 0.005 * i, 0.9 * j / max(args.scenarios - 1, 1)) for i in range(args.scenarios) for j in range(args.scenarios)]
    started = time.monotonic()
    with Client(args.scheduler) as client:
        futures = [client.submit(simulate_portfolio, vol, corr, args.paths, seed) for seed, (vol, corr) in enumerate(grid)]
        results = []
        for future in concurrent.futures.as_completed(futures):
            results.append(future.result())
            bar(len(results), len(futures), started, args.admin)
    print()
    worst = max(results, key=lambda r: r["var99"])
    print(f"{len(results)} scenarios x {args.paths:,} paths in {time.monotonic() - started:.1f} s")
    print(f"worst 99% VaR: {worst['var99']:,.0f} on {VALUE:,.0f} (volatility {worst['volatility']:.3f}, correlation {worst['correlation']:.2f})")
    if args.admin:
        print("waiting for the fleet to shrink back to zero ...")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = fleet(args.admin)
            sys.stdout.write(f"\r{line}   ")
            sys.stdout.flush()
            if line.endswith("workers 0") and "0 starting, 0 running, 0 draining" in line:
                print("\nback to zero.")
                break
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())

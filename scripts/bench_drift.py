"""Benchmark the drift monitor and CBPE on the bundled data (``make bench-drift``).

Prints, for windows of 50, 100, 200, 500 and 1,000 rows: the drift report's false-alarm rate on
in-distribution windows (each against its own resampled reference, and against the seed-42
champion's reference), its power on the shifts of :data:`core.monitoring.simulation.SHIFTS`;
then the default model's reliability on the holdout and CBPE's F1 error when the holdout is
replayed in windows. How windows are drawn: :mod:`core.monitoring.simulation`.

Needs no champion and no service: the default model is trained here (``TrainConfig()``, no CV,
the same split and seed as ``make train``). The last stdout line is one JSON object with every
figure and whether each acceptance floor holds (false-alarm rate <= 5 % at every size, power
>= 90 % for day minutes +25 % at 200 rows, CBPE's F1 MAE <= 0.05 at 500 rows).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# pylint: disable=wrong-import-position
from core.data import load_dataset  # noqa: E402
from core.evaluate import reliability  # noqa: E402
from core.monitoring.drift import ALPHA, MIN_ROWS  # noqa: E402
from core.monitoring.simulation import (  # noqa: E402
    SHIFTS,
    SIZES,
    alarm_rate,
    cbpe_replay,
    fixed_reference_rate,
)
from core.pipelines import fit_and_evaluate  # noqa: E402
from core.settings import get_settings  # noqa: E402
from core.train import TrainConfig  # noqa: E402

FLOORS = {"false_alarm_rate": 0.05, "power_day_minutes_n200": 0.90, "cbpe_f1_mae_n500": 0.05}
CBPE_SIZES = (100, 200, 500)


def log(message: str) -> None:
    """Progress on stderr (stdout ends with the JSON line)."""
    print(message, file=sys.stderr, flush=True)


def drift_figures(args: argparse.Namespace) -> dict[str, Any]:
    """False-alarm rates and power at every size."""
    frame = load_dataset(get_settings().data_path)
    far, far_fixed = {}, {}
    power: dict[str, dict[str, Any]] = {name: {} for name in SHIFTS}
    for n in SIZES:
        started = time.perf_counter()
        far[str(n)] = alarm_rate(frame, n, args.windows, seed=args.seed).model_dump()
        far_fixed[str(n)] = fixed_reference_rate(frame, n, args.windows, args.seed).model_dump()
        for name, shift in SHIFTS.items():
            power[name][str(n)] = alarm_rate(
                frame, n, args.power_windows, shift, seed=args.seed + 10_000
            ).model_dump()
        log(f"n={n}: {time.perf_counter() - started:.0f} s")
    return {
        "alpha": ALPHA,
        "min_rows": MIN_ROWS,
        "windows": args.windows,
        "power_windows": args.power_windows,
        "false_alarm_rate": far,
        "false_alarm_rate_champion_reference": far_fixed,
        "power": power,
    }


def cbpe_figures(args: argparse.Namespace) -> dict[str, Any]:
    """The default model's holdout reliability and CBPE's replayed error."""
    trained = fit_and_evaluate(load_dataset(get_settings().data_path), TrainConfig(cv_folds=0))
    x_test, y_test = trained.holdout()
    probabilities = trained.bundle.pipeline.predict_proba(x_test)[:, 1]
    threshold = trained.bundle.threshold
    replays = {
        str(n): cbpe_replay(probabilities, y_test, threshold, n, args.cbpe_windows, args.seed)
        for n in CBPE_SIZES
    }
    return {
        "holdout_f1": round(trained.bundle.metrics.f1, 4),
        "threshold": round(threshold, 4),
        "reliability": reliability(y_test, probabilities).model_dump(),
        "replay": {n: r.model_dump() for n, r in replays.items()},
    }


def judge(results: dict[str, Any]) -> dict[str, Any]:
    """Add the acceptance floors."""
    drift, cbpe = results["drift"], results["cbpe"]
    results["floors"] = {
        "false_alarm_rate_le_5pct_every_n": all(
            r["rate"] <= FLOORS["false_alarm_rate"] for r in drift["false_alarm_rate"].values()
        ),
        "power_day_minutes_n200_ge_90pct": drift["power"]["day_minutes_+25%"]["200"]["rate"]
        >= FLOORS["power_day_minutes_n200"],
        "cbpe_f1_mae_n500_le_0.05": cbpe["replay"]["500"]["mae"] <= FLOORS["cbpe_f1_mae_n500"],
    }
    results["pass"] = all(results["floors"].values())
    return results


def print_table(results: dict[str, Any]) -> None:
    """The figures as a table (stdout, before the JSON line)."""
    drift = results["drift"]
    shifts = list(drift["power"])
    head = f"{'n':>6}{'FAR':>8}{'95 % CI':>15}{'FAR champion':>14}"
    print(head + "".join(f"{name:>26}" for name in shifts))
    for n in map(str, SIZES):
        far, fixed = drift["false_alarm_rate"][n], drift["false_alarm_rate_champion_reference"][n]
        row = f"{n:>6}{far['rate']:>8.3f}  [{far['low']:.3f}, {far['high']:.3f}]"
        row += f"{fixed['rate']:>14.3f}"
        print(row + "".join(f"{drift['power'][s][n]['rate']:>26.3f}" for s in shifts))
    cbpe = results["cbpe"]
    print(f"holdout reliability: ECE {cbpe['reliability']['ece']:.4f}, mean probability "
          f"{cbpe['reliability']['mean_probability']:.4f} vs churn rate "
          f"{cbpe['reliability']['churn_rate']:.4f}")  # fmt: skip
    for n, replay in cbpe["replay"].items():
        print(f"CBPE F1, windows of {n}: MAE {replay['mae']:.4f}, bias {replay['bias']:+.4f},"
              f" interval coverage {replay['coverage']:.3f}"
              f" ({replay['windows']} windows)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table and, last, one JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--windows", type=int, default=200, help="windows per size (FAR)")
    parser.add_argument("--power-windows", type=int, default=200, help="windows per size and shift")
    parser.add_argument("--cbpe-windows", type=int, default=500, help="replayed CBPE windows")
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = {"drift": drift_figures(args), "cbpe": cbpe_figures(args)}
    results["seconds"] = round(time.perf_counter() - started, 1)
    judge(results)
    print_table(results)
    print(json.dumps(results, separators=(",", ":")))
    return 0 if results["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

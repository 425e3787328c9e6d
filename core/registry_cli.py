"""``churnops {promote, rollback, champion, tune}``: the registry's command line.

``make promote VERSION=n``, ``make rollback``, ``make champion`` and ``make tune`` call it through
:func:`core.cli.main`, which turns any failure into its one stderr line; each command prints one
JSON object on stdout (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from core.arguments import add_command, doc_text, int_at_least
from core.families import DEFAULT_FAMILY, MODEL_FAMILIES
from core.settings import get_settings


def _print_json(data: Any) -> None:
    print(json.dumps(data, default=str, sort_keys=True))  # noqa: T201 - the CLI's output


def main(argv: Sequence[str] | None = None) -> int:
    """Promote, roll back, show the champion, or tune; returns the exit code.

    Raises:
        RegistryError: no such version, no previous champion, an unreachable or broken store
            (:func:`core.cli.main` prints it as one line and exits 1); any other failure likewise.
    """
    parser = argparse.ArgumentParser(prog="churnops", description=doc_text(main.__doc__))
    sub = parser.add_subparsers(dest="command", required=True)
    p_promote = add_command(sub, "promote", "force VERSION to champion (recorded)")
    p_promote.add_argument(
        "version", type=int_at_least(1), help="model version number of churn-model"
    )
    p_promote.add_argument("--reason", default="manual promotion", help="why (recorded)")
    p_rollback = add_command(sub, "rollback", "champion back to the previous champion")
    p_rollback.add_argument("--reason", default="manual rollback", help="why (recorded)")
    add_command(sub, "champion", "print the champion and every version as JSON")
    p_tune = add_command(sub, "tune", "hyper-parameter search as nested runs, best through gate")
    p_tune.add_argument(
        "--trials",
        type=int_at_least(1),
        default=8,
        help="number of sampled configurations (default 8)",
    )
    p_tune.add_argument(
        "--folds",
        type=int_at_least(2),
        default=3,
        help="cross-validation folds per trial (default 3)",
    )
    p_tune.add_argument(
        "--family",
        choices=MODEL_FAMILIES,
        default=DEFAULT_FAMILY,
        help=f"model family to tune (default {DEFAULT_FAMILY})",
    )
    args = parser.parse_args(argv)
    # Imported once the arguments are parsed: MLflow takes seconds, --help and usage errors do not.
    # pylint: disable-next=import-outside-toplevel
    from core.registry import CHAMPION, list_versions, promote, rollback

    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    if args.command == "promote":
        _print_json(promote(settings, str(args.version), args.reason).model_dump())
    elif args.command == "rollback":
        _print_json(rollback(settings, args.reason).model_dump())
    elif args.command == "champion":
        versions = [v.model_dump(mode="json") for v in list_versions(settings)]
        champion = next((v for v in versions if CHAMPION in v["aliases"]), None)
        _print_json({"champion": champion, "versions": versions})
    else:
        # pylint: disable-next=import-outside-toplevel  # the training pipeline, for tune only
        from core.tuning import tune

        result = tune(
            settings, family=args.family, trials=args.trials, folds=args.folds,
            on_progress=_stderr_progress,
        )  # fmt: skip
        _print_json(result.summary())
    return 0


def _stderr_progress(step: str, fraction: float) -> None:
    print(f"[{fraction:6.1%}] {step}", file=sys.stderr, flush=True)  # noqa: T201

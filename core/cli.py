"""The ML commands of ``churnops``: validate data, train, evaluate, predict, registry commands.

Progress and human-readable summaries go to stderr; machine-readable results go to stdout (``train``
ends with ONE JSON line: ``run_id``, ``model_version``, ``f1``, ``roc_auc``, ``promoted``).
Every table is read by :func:`core.tables.read_table` (CSV/TSV in any separator, decimal mark and
encoding, workbooks), which is reported on stderr ("read as ;-separated, decimal comma, cp1252").
Exit codes: 0 success, 1 invalid data, an unreadable file or a missed quality floor (``evaluate
--check``), 2 usage. A failure is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.arguments import doc_text, int_at_least
from core.families import DEFAULT_FAMILY, MODEL_FAMILIES
from core.settings import get_settings

if TYPE_CHECKING:
    from core.predict import ServedModel
    from core.schema import SchemaError
    from core.tables import Table

# The data and model modules (pandas, sklearn, MLflow: seconds to import) are imported inside the
# commands that use them, so --help and usage errors answer at once.
# pylint: disable=import-outside-toplevel


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _out(message: str) -> None:
    print(message, flush=True)


def _progress(step: str, fraction: float) -> None:
    _err(f"[{fraction:4.0%}] {step}")


def _model_dir(value: Path | None) -> Path:
    from core.persist import latest_bundle_dir

    if value is not None:
        return value
    return latest_bundle_dir(get_settings().var_dir / "models")


def _read(path: Path, *, require_target: bool) -> Table:
    """Read a table, saying on stderr how it was read and every warning."""
    from core.tables import read_path

    table = read_path(path, require_target=require_target)
    _report(path, table)
    return table


def _report(path: Path, table: Table) -> None:
    _err(f"{path}: {table.read_as}")
    for warning in table.warnings:
        _err(f"warning: {warning}")


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a table against the schema and list every issue (--no-target: a file to score)."""
    from core.data import file_sha256

    path: Path = args.data or get_settings().data_path
    report = _read(path, require_target=args.target).report
    rows = len(report.frame)
    if report.ok:
        _out(f"OK {path}: {rows} rows, all valid (sha256 {file_sha256(path)})")
        return 0
    valid = int(report.valid_rows.sum())
    _out(f"INVALID {path}: {len(report.issues)} issue(s), {valid}/{rows} valid rows")
    _out(report.summary(limit=args.limit))
    return 1


def cmd_train(args: argparse.Namespace) -> int:
    """Train, evaluate on the holdout, save the bundle; last stdout line is the JSON summary."""
    from core.data import check_trainable, labelled_rows
    from core.pipelines import train_and_register
    from core.train import TrainConfig

    settings = get_settings()
    if args.data is not None:
        settings = settings.model_copy(update={"data_path": args.data})
    config = TrainConfig(family=args.family, cv_folds=args.cv_folds, seed=args.seed)
    # The whole file is checked before anything is fitted (train_and_register checks it again).
    table = _read(settings.data_path, require_target=True)
    frame = labelled_rows(table, drop_invalid_rows=args.drop_invalid_rows)
    check_trainable(frame, config.split, config.cv_folds)
    if len(frame) < len(table.source):
        _err(f"dropped {len(table.source) - len(frame)} invalid row(s); training on {len(frame)}")
    result = train_and_register(
        settings,
        config,
        on_progress=None if args.quiet else _progress,
        drop_invalid_rows=args.drop_invalid_rows,
    )
    metrics = result.metrics
    cv = f"{result.cv.mean:.4f} ± {result.cv.std:.4f}" if result.cv else "skipped"
    _err(
        f"{result.family}: holdout F1 {metrics.f1:.4f}, ROC-AUC {metrics.roc_auc:.4f}, "
        f"PR-AUC {metrics.pr_auc:.4f}, Brier {metrics.brier:.4f}, threshold {result.threshold:.3f}"
        f"; {config.cv_folds}-fold CV F1 {cv}; bundle {result.bundle_dir};"
        f" {result.duration_s:.1f} s"
    )
    if result.reason:  # the promotion gate's verdict (floors judged on the rows it compared)
        _err(f"gate: {result.verdict} - {result.reason}")
    _out(json.dumps(result.summary()))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score a saved bundle on the holdout of a labelled CSV (or on all of its rows)."""
    from core.data import load_dataset, split_dataset, to_xy
    from core.evaluate import QUALITY_THRESHOLDS, evaluate
    from core.persist import load_bundle
    from core.predict import ServedModel
    from core.tables import PROBABILITY

    bundle_dir = _model_dir(args.model)
    bundle = load_bundle(bundle_dir)
    frame = load_dataset(args.data or get_settings().data_path)
    if args.split == "holdout":
        frame = split_dataset(frame, bundle.meta.config.split).test
    x, y = to_xy(frame)
    served = ServedModel.build(bundle, bundle_dir.name)
    probability = served.predict_frame(x)[PROBABILITY].to_numpy()
    metrics = evaluate(y, probability, bundle.threshold)
    failures = QUALITY_THRESHOLDS.failures(metrics)
    document: dict[str, Any] = {
        "model": str(bundle_dir),
        "split": args.split,
        "metrics": metrics.model_dump(),
        "passes_floors": not failures,
        "failures": failures,
    }
    _out(json.dumps(document, indent=2))
    return 1 if failures and args.check else 0


def _scoring_model(model_dir: Path | None) -> ServedModel:
    """The model to score with, as the API serves it: ``--model DIR`` if given, else the
    champion (from the registry, or its local copy when the registry is down); stderr says
    which."""
    from core.persist import load_bundle
    from core.predict import ServedModel

    if model_dir is not None:
        _err(f"scoring with the bundle in {model_dir} (given with --model)")
        return ServedModel.build(load_bundle(model_dir), model_dir.name)
    from core.registry import ChampionUnavailable, load_champion  # MLflow: only for the champion

    settings = get_settings()
    try:
        loaded = load_champion(settings)
    except ChampionUnavailable as exc:
        raise ChampionUnavailable(
            f"{exc}. Train one first: `make train` (or `make run`, which trains one when there is "
            "none), or score with a bundle: --model DIR"
        ) from exc
    where = f"the local copy ({loaded.reason})" if loaded.degraded else "the registry"
    _err(f"scoring with {settings.model_name} v{loaded.version}, the champion, from {where}")
    return ServedModel.from_loaded(loaded, name=settings.model_name)


def _print_labelled(model: ServedModel, table: Table, probabilities: Any) -> None:
    """With a label column: the model's quality on the labelled rows it never trained on, on
    stderr (nothing without one)."""
    from core.labelled import SampleRule, labelled_report

    report = labelled_report(
        table.labelled_frame(),
        probabilities,
        model.threshold,
        model.bundle.seen_rows,
        SampleRule.from_settings(get_settings()),
    )
    if report is None:
        return
    _err(f"labels: {report.note}")
    for name in ("precision", "recall", "f1", "roc_auc"):
        _err(f"  {report.quality.text(name)}")


def cmd_predict(args: argparse.Namespace) -> int:
    """Score a table of customers with the champion (or ``--model DIR``); writes every input
    column (ids too, unchanged) plus churn_probability and churn_label, in the input's separator
    and decimal mark. With a label column, stderr also gives the model's quality on the labelled
    rows it never trained on."""
    from core.schema import POSITIVE_LABEL, SchemaError
    from core.tables import LABEL, PROBABILITY, read_path, scored_table, write_like

    table = read_path(args.input)  # a broken file is refused before any model is loaded
    if not table.report.ok:
        raise SchemaError(table.report)
    model = _scoring_model(args.model)
    _report(args.input, table)
    scored = model.predict_frame(table.report.frame)
    _print_labelled(model, table, scored[PROBABILITY].to_numpy())
    output = scored_table(table.source, scored[PROBABILITY].to_numpy(), scored[LABEL].to_numpy())
    content = write_like(output, table.dialect)
    if str(args.output) == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(content)
        sys.stdout.buffer.flush()
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(content)
        churners = int((scored[LABEL] == POSITIVE_LABEL).sum())
        _err(f"wrote {len(scored)} predictions ({churners} churn) to {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ML commands of ``churnops`` (one sub-command per action)."""
    parser = argparse.ArgumentParser(prog="churnops", description="churnops: churn model pipeline.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_help = (
        "CSV/TSV (any separator, decimal mark, encoding) or workbook, modeldata or BigML "
        "spelling; default: DATA_PATH (data/raw/churn.csv)"
    )
    model_help = "bundle directory; default: the last one trained under VAR_DIR/models"

    p = sub.add_parser(
        "validate",
        help="check a CSV against the schema",
        description=doc_text(cmd_validate.__doc__),
    )
    p.add_argument("--data", type=Path, help=data_help)
    p.add_argument(
        "--no-target", dest="target", action="store_false", help="the churn column may be absent"
    )
    p.add_argument(
        "--limit",
        type=int_at_least(1),
        default=20,
        help="show at most this many issues (default 20)",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "train", help="train, evaluate and save a model", description=doc_text(cmd_train.__doc__)
    )
    p.add_argument("--data", type=Path, help=data_help)
    p.add_argument(
        "--family",
        choices=MODEL_FAMILIES,
        default=DEFAULT_FAMILY,
        help=f"model family (default {DEFAULT_FAMILY})",
    )
    p.add_argument(
        "--cv-folds",
        type=int_at_least(0),
        default=5,
        help="folds of the reported CV F1; 0 skips (default 5)",
    )
    p.add_argument("--seed", type=int, default=42, help="random_state of the model (default 42)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--drop-invalid-rows",
        action="store_true",
        help="train on the valid rows of a file with bad rows (default: refuse the file)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate", help="score a saved model", description=doc_text(cmd_evaluate.__doc__)
    )
    p.add_argument("--model", type=Path, help=model_help)
    p.add_argument("--data", type=Path, help=data_help + "; must contain churn")
    p.add_argument(
        "--split",
        choices=("holdout", "all"),
        default="holdout",
        help="score the model's fixed holdout (default) or every row",
    )
    p.add_argument("--check", action="store_true", help="exit 1 when a quality floor is missed")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "predict", help="score a table of customers", description=doc_text(cmd_predict.__doc__)
    )
    p.add_argument(
        "--input", type=Path, required=True, help="table of customers (19 raw columns + any)"
    )
    p.add_argument(
        "--output", type=Path, default=Path("-"), help="output CSV; '-' = stdout (default)"
    )
    p.add_argument(
        "--model", type=Path, help="bundle directory; default: the champion the API serves"
    )
    p.set_defaults(func=cmd_predict)

    for name, text in REGISTRY_COMMANDS.items():  # delegated to core.registry_cli
        sub.add_parser(name, help=text, description=text)  # listed here, run by main()
    return parser


REGISTRY_COMMANDS: dict[str, str] = {
    "promote": "force VERSION of churn-model to champion (recorded)",
    "rollback": "move champion back to the previous champion (recorded)",
    "champion": "show the champion and every registered version (JSON)",
    "tune": "hyper-parameter search as nested MLflow runs; the best goes through the gate",
}


def cmd_registry(argv: Sequence[str]) -> int:
    """Model registry commands, run by :mod:`core.registry_cli` (which imports MLflow once their
    arguments are parsed)."""
    from core import registry_cli

    return registry_cli.main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command and return its exit code."""
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        if raw and raw[0] in REGISTRY_COMMANDS:  # their own parser (and --help) lives there
            return cmd_registry(raw)
        args = build_parser().parse_args(raw)
        return int(args.func(args))
    except Exception as exc:  # pylint: disable=broad-exception-caught  # one line, no traceback
        _err(_failure_line(exc))
        return 1


def _failure_line(exc: Exception) -> str:
    """The one stderr line of a failed command: ``invalid data: ...`` or ``error: ...``."""
    # Imported on this failure path only: --help and usage errors must not load pandas/sklearn.
    from pydantic import ValidationError

    from core.data import NotTrainable
    from core.schema import SchemaError
    from core.tables import TableError

    if isinstance(exc, SchemaError):
        return f"invalid data: {_issues_line(exc)}"
    if isinstance(exc, ValidationError):  # a setting or an option a model of core refused
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or exc.title
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"invalid value: {where}: {first['msg']}{more}"
    if isinstance(exc, (TableError, NotTrainable)):
        return f"invalid data: {exc}"
    if isinstance(exc, (OSError, RuntimeError)):  # a missing file, no champion, a broken store
        return f"error: {exc}"
    return f"error: {type(exc).__name__}: {exc}".splitlines()[0]


def _issues_line(exc: SchemaError, shown: int = 3) -> str:
    """A schema error on one line: the count, the first issues, and how to see them all."""
    issues = exc.report.issues
    first = "; ".join(str(issue) for issue in issues[:shown])
    more = f" (+{len(issues) - shown} more: `churnops validate` lists them)"
    return f"{len(issues)} issue(s): {first}" + (more if len(issues) > shown else "")

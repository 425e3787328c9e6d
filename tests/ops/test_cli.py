"""``churnops``: every command answers --help and usage errors before loading the ML stack.

All the cases run in ONE fresh interpreter (the test's own one has pandas and sklearn loaded
already), each through ``ops.cli.main`` as the installed ``churnops`` script calls it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess  # a fresh interpreter is the point of the test  # nosec B404
import sys
from typing import Any

import pytest

from ops import cli
from tests.factories import ROOT

#: Importing any of these takes seconds on the shared machine (mlflow alone ~10 s cold).
HEAVY = ("sklearn", "mlflow", "pandas", "pyarrow")

#: The sub-commands of each command that has some (the others have none).
SUBCOMMANDS: dict[str, tuple[str, ...]] = {
    "monitoring": ("setup", "export-mlflow", "drift", "agent", "ship", "kibana-import"),
    "pipeline": ("run", "model-version"),
    "notify": ("desktop", "email", "flush"),
}

#: One usage error per command and sub-command, with the text its error line must name.
USAGE_ERRORS: list[tuple[list[str], str]] = [
    (["validate", "--limit", "many"], "--limit"),
    (["train", "--family", "xgb"], "'xgb'"),
    (["evaluate", "--split", "everything"], "'everything'"),
    (["predict"], "--input"),
    (["promote"], "version"),
    (["rollback", "--bogus"], "--bogus"),
    (["champion", "--bogus"], "--bogus"),
    (["tune", "--trials", "few"], "'few'"),
    (["tune", "--family", "xgb"], "'xgb'"),
    (["serve", "nowhere"], "'nowhere'"),
    (["prepare", "--bogus"], "--bogus"),
    (["migrate-store", "--bogus"], "--bogus"),
    (["run", "--bogus"], "--bogus"),
    (["monitoring"], "command"),
    (["monitoring", "setup", "--wait", "soon"], "'soon'"),
    (["monitoring", "export-mlflow", "--follow", "often"], "'often'"),
    (["monitoring", "drift", "--hours", "many"], "'many'"),
    (["monitoring", "agent", "--interval", "often"], "'often'"),
    (["monitoring", "ship", "--batch", "big"], "'big'"),
    (["monitoring", "kibana-import", "--wait", "soon"], "'soon'"),
    (["pipeline"], "command"),
    (["pipeline", "run"], "name"),
    (["pipeline", "model-version", "--bogus"], "--bogus"),
    (["watch", "--bogus"], "--bogus"),
    (["notify"], "command"),
    (["notify", "desktop"], "title"),
    (["notify", "email"], "subject"),
    (["notify", "flush", "--bogus"], "--bogus"),
    # numbers out of their range are usage errors too, found before any work
    (["validate", "--limit", "0"], "--limit: 0 is below the minimum, 1"),
    (["train", "--cv-folds", "-1"], "--cv-folds: -1 is below the minimum, 0"),
    (["tune", "--trials", "0"], "--trials: 0 is below the minimum, 1"),
    (["promote", "abc"], "version: 'abc' is not an integer"),
    (["tune", "--folds", "1"], "--folds: 1 is below the minimum, 2"),
    (["serve", "api", "--port", "70000"], "--port: 70000 is not a TCP port"),
    (["serve", "api", "--workers", "0"], "--workers: 0 is below the minimum, 1"),
    (["run", "--api-port", "0"], "--api-port: 0 is below the minimum, 1"),
    (["monitoring", "drift", "--alpha", "1.5"], "--alpha: 1.5 is not between 0 and 1"),
    (["monitoring", "drift", "--hours", "nan"], "--hours: nan is not a finite number above 0"),
    (["monitoring", "agent", "--interval", "0"], "--interval: 0 is not a finite number above 0"),
    (["monitoring", "ship", "--batch", "-5"], "--batch: -5 is below the minimum, 1"),
    (["monitoring", "export-mlflow", "--follow", "-1"], "--follow: -1 is not a finite"),
    (["watch", "--debounce", "0"], "--debounce: 0 is not a finite number above 0"),
]

HELP_CASES: list[list[str]] = [
    *([command, "--help"] for command in (*cli.ML_COMMANDS, *cli.COMMANDS)),
    *([command, sub, "--help"] for command, subs in SUBCOMMANDS.items() for sub in subs),
]

#: Runs each case through ops.cli.main; prints, as JSON, its exit code, output and the heavy
#: modules it loaded (the first case to load one is the culprit), then every heavy module loaded.
SCRIPT = """
import contextlib, io, json, sys, traceback
from ops.cli import main
heavy = tuple(sys.argv[1].split(","))
def loaded():
    return sorted(name for name in heavy if name in sys.modules)
results = []
for argv in json.loads(sys.stdin.read()):
    before, out, err = loaded(), io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        except BaseException:  # what the user would see: a traceback
            traceback.print_exc()
            code = 1
    new = [name for name in loaded() if name not in before]
    results.append({"argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue(),
                    "loaded": new})
print(json.dumps({"results": results, "loaded": loaded()}))
"""


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case, answered by one fresh interpreter; keyed by the joined argv."""
    cases = [["--help"], *HELP_CASES, *(argv for argv, _ in USAGE_ERRORS)]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VAR_DIR": str(tmp_path_factory.mktemp("var")),  # nothing may be written, even so
    }
    done = subprocess.run(  # this interpreter, fixed arguments  # nosec B603
        [sys.executable, "-c", SCRIPT, ",".join(HEAVY)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    by_argv = {" ".join(result["argv"]): result for result in document["results"]}
    return {"by_argv": by_argv, "loaded": document["loaded"]}


def test_no_command_loads_the_ml_stack_to_parse_its_arguments(answers: dict[str, Any]) -> None:
    culprits = {argv: r["loaded"] for argv, r in answers["by_argv"].items() if r["loaded"]}
    assert not answers["loaded"], f"loaded {answers['loaded']}, first by {culprits}"


def test_every_command_of_the_dispatcher_is_covered() -> None:
    assert {argv[0] for argv in HELP_CASES} == {*cli.ML_COMMANDS, *cli.COMMANDS}
    assert {argv[0] for argv, _ in USAGE_ERRORS} == {*cli.ML_COMMANDS, *cli.COMMANDS}
    covered = {tuple(argv[:2]) for argv, _ in USAGE_ERRORS if len(argv) > 1}
    for command, subs in SUBCOMMANDS.items():
        assert {(command, sub) for sub in subs} <= covered


@pytest.mark.parametrize("argv", HELP_CASES, ids=" ".join)
def test_help_exits_0_with_the_usage_text(argv: list[str], answers: dict[str, Any]) -> None:
    result = answers["by_argv"][" ".join(argv)]
    assert result["code"] == 0, result["err"]
    assert result["out"].startswith(f"usage: churnops {' '.join(argv[:-1])}"), result["out"]
    assert result["err"] == ""
    if argv[0] in SUBCOMMANDS and len(argv) == 2:  # the group lists every sub-command above
        assert "{" + ",".join(SUBCOMMANDS[argv[0]]) + "}" in result["out"]
    # plain text, not the docstrings' reST, and a description under the usage lines
    assert not re.search(r"``|:(mod|func|class|data|meth):`", result["out"]), result["out"]
    blocks = result["out"].split("\n\n")
    assert len(blocks) > 2 and not blocks[1].startswith(
        ("options:", "positional arguments:")
    ), f"no description: {result['out']}"
    assert blocks[1].rstrip()[-1] in ".)>", f"description cut mid-sentence? {blocks[1]!r}"


def test_the_top_level_help_is_plain_text(answers: dict[str, Any]) -> None:
    result = answers["by_argv"]["--help"]
    assert result["code"] == 0 and "churnops serve" in result["out"]
    assert not re.search(r"``|:(mod|func|class|data|meth):`", result["out"]), result["out"]


@pytest.mark.parametrize("argv,problem", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_a_usage_error_exits_2_with_one_line_naming_it(
    argv: list[str], problem: str, answers: dict[str, Any]
) -> None:
    result = answers["by_argv"][" ".join(argv)]
    err: str = result["err"]
    assert result["code"] == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    assert errors[0].startswith("churnops") and problem in errors[0], err
    assert result["out"] == ""

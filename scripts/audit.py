"""Audit the locked dependencies for known vulnerabilities.

Runs ``pip-audit`` when PyPI's per-release JSON API answers. Some networks (this project's build
machines among them) serve only PyPI's per-project JSON, which lists the advisories of the newest
release; then each locked package is checked against that: exactly when the lock pins the newest
release, and conservatively otherwise (every advisory still open on the newest release is taken to
affect the older pin too). Packages that cannot be checked exactly are counted and named.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess  # runs pip-audit from our own venv with fixed arguments  # nosec B404
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

PYPI = "https://pypi.org/pypi"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)")


def locked_pins(requirements: Path) -> list[tuple[str, str]]:
    """Return ``(name, version)`` for every ``name==version`` line of a requirements file."""
    pins = []
    for line in requirements.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line.strip())
        if match:
            pins.append((match.group(1).lower(), match.group(2)))
    return pins


def per_release_api_served() -> bool:
    """Whether PyPI's per-release JSON API (what pip-audit needs) answers on this network."""
    try:
        return requests.get(f"{PYPI}/pip/24.0/json", timeout=20).status_code == 200
    except requests.RequestException:
        return False


def check(pin: tuple[str, str]) -> dict[str, object]:
    """Advisories that affect one pinned package, from PyPI's per-project JSON."""
    name, version = pin
    response = requests.get(f"{PYPI}/{name}/json", timeout=30)
    response.raise_for_status()
    document = response.json()
    latest = document["info"]["version"]
    open_advisories = [
        {"id": v.get("id"), "fixed_in": v.get("fixed_in"), "summary": v.get("summary")}
        for v in document.get("vulnerabilities", [])
        if not v.get("withdrawn")
    ]
    return {
        "name": name,
        "version": version,
        "latest": latest,
        "exact": latest == version,
        "advisories": open_advisories,
    }


def main() -> int:
    """Audit and print a summary; exit 1 when any advisory affects a locked package."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("requirements", type=Path)
    args = parser.parse_args()
    if per_release_api_served():
        command = [sys.executable, "-m", "pip_audit", "--strict", "--disable-pip"]
        command += ["--require-hashes", "-r", str(args.requirements)]
        return subprocess.call(command)  # fixed argv, no shell  # nosec B603
    pins = locked_pins(args.requirements)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(check, pins))
    affected = [r for r in results if r["advisories"]]
    inexact = [f"{r['name']}=={r['version']} (newest {r['latest']})" for r in results]
    inexact = [text for text, r in zip(inexact, results) if not r["exact"]]
    print("pip-audit needs PyPI's per-release JSON API, which this network does not serve;")
    print(f"checked {len(results)} locked packages against PyPI's per-project advisories:")
    print(f"  exact for {len(results) - len(inexact)} (the lock pins the newest release)")
    print(f"  newest-release advisories only for {len(inexact)}: {', '.join(inexact)}")
    for result in affected:
        print(f"VULNERABLE {result['name']}=={result['version']}: {result['advisories']}")
    print(
        json.dumps({"packages": len(results), "inexact": len(inexact), "vulnerable": len(affected)})
    )
    return 1 if affected else 0


if __name__ == "__main__":
    sys.exit(main())

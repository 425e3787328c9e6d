"""The champion as a LitServe server, with LitServe's documented defaults but the worker count:
``python litserve_server.py PORT WORKERS``; ``POST /predict`` with the customer as the body."""

from __future__ import annotations

import sys
from typing import Any

# litserve is installed in the bench venv only
import litserve as ls  # type: ignore[import-not-found]  # pylint: disable=import-error

from scripts.bench_servers import churn_scorer


class ChurnAPI(ls.LitAPI):  # type: ignore[misc]
    """One customer in, its churn probability and label out."""

    def setup(self, device: str) -> None:
        """Load the champion's bundle once per worker."""
        del device
        self.score = churn_scorer()  # pylint: disable=attribute-defined-outside-init

    def decode_request(self, request):  # type: ignore[no-untyped-def]
        """The body is the customer (unannotated: LitServe then passes the JSON body)."""
        return request

    def predict(self, x: dict[str, Any]) -> dict[str, Any]:
        """Score one customer."""
        return self.score(x)

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        """The prediction as JSON."""
        return output


if __name__ == "__main__":
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    server = ls.LitServer(ChurnAPI(), accelerator="cpu", workers_per_device=workers)
    server.run(host="127.0.0.1", port=port, generate_client_file=False)

"""Fixtures of the monitoring tests: a client of the session's real Elasticsearch (the
``elasticsearch`` fixture of ``tests/conftest.py``), a fresh index prefix per test, the root logger
restored after the CLI configured it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest

from elasticsearch import Elasticsearch

from core.monitoring.es import connect, ping
from core.monitoring.indices import Indices
from tests.conftest import need
from tests.elastic import LocalElasticsearch


@pytest.fixture()
def es(elasticsearch: LocalElasticsearch) -> Iterator[Elasticsearch]:
    """A client of the session's Elasticsearch."""
    client = connect(elasticsearch.url)
    need(ping(client, timeout=5.0), "Elasticsearch is not running")
    yield client
    client.close()


@pytest.fixture()
def es_url(elasticsearch: LocalElasticsearch) -> str:
    """The base URL of the session's Elasticsearch."""
    return elasticsearch.url


@pytest.fixture()
def indices() -> Indices:
    """A fresh index prefix per test, so tests never see each other's documents."""
    return Indices(f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures the root logger: give later tests their original handlers back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)

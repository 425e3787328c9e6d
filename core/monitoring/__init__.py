"""Monitoring: Elasticsearch templates and exporters, the event sender, drift, the host agent.

``churnops monitoring --help`` lists the commands. Prediction events are not submitted by
the API: ``churnops monitoring ship`` (:mod:`core.monitoring.outbox`) sends the rows of its
``prediction`` table. Other producers (host agent, drift and quality jobs) use
:func:`get_event_sink` (``submit(kind, docs)`` / ``flush`` / ``close``); with ``ES_URL`` unset,
monitoring data goes to the embedded SQLite store instead (:mod:`core.monitoring.store`).
"""

from core.monitoring.indices import ELASTIC_VERSION, Indices
from core.monitoring.sink import BulkEventSink, EventSink, NullSink, SinkConfig, get_event_sink

__all__ = [
    "ELASTIC_VERSION",
    "BulkEventSink",
    "EventSink",
    "Indices",
    "NullSink",
    "SinkConfig",
    "get_event_sink",
]

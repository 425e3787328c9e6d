"""Monitoring: Elasticsearch templates and exporters, the event sender, drift, the host agent.

``churnops monitoring --help`` lists the commands. Prediction events are not submitted by
the API: ``churnops monitoring ship`` (:mod:`core.monitoring.outbox`) sends the rows of its
``prediction`` table. Other producers (host agent, drift and quality jobs) use
:func:`core.monitoring.sink.get_event_sink` (``submit(kind, docs)`` / ``flush`` / ``close``); with
``ES_URL`` unset, monitoring data goes to the embedded SQLite store instead
(:mod:`core.monitoring.store`).

The package itself imports only the index names (no Elasticsearch client, no pandas): every
``core.monitoring.*`` import runs this file first, ``churnops monitoring --help`` included.
"""

from core.monitoring.indices import ELASTIC_VERSION, Indices

__all__ = ["ELASTIC_VERSION", "Indices"]

"""ops.services: a taken port is refused before anything starts, with a hint that works."""

from __future__ import annotations

import re
import socket

import pytest

from core.settings import Settings
from ops import services
from tests.net import free_port


def test_a_taken_port_names_its_variable_and_a_port_that_is_free() -> None:
    """The hint's port can be bound (a taken next port is skipped, not suggested)."""
    port = free_port()
    with socket.socket() as taken, socket.socket() as next_taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        try:
            next_taken.bind(("127.0.0.1", port + 1))
            next_taken.listen()
        except OSError:
            pass  # already taken by someone else: skipped all the same
        service = services.api(Settings(_env_file=None), host="127.0.0.1", port=port)
        with pytest.raises(services.PortInUse, match=rf"port {port} on 127.0.0.1") as refused:
            services.check_port(service)
        found = re.search(r"`API_PORT=(\d+) make run`", str(refused.value))
        assert found is not None, str(refused.value)
        assert f"API_PORT={found.group(1)}, which is free now" in str(refused.value)
        suggested = int(found.group(1))
        assert suggested > port + 1
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", suggested))  # really free

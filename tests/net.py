"""Network helpers shared by the tests: the one way a test picks a local TCP port."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's pick for port 0).

    The port is released before returning, so a server started next binds it, and a client
    connecting to it without a server gets "connection refused".
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def hello_app(scope: dict[str, object], receive: object, send: object) -> None:
    """The smallest ASGI app (``tests.net:hello_app``): 200 ``hello`` to every HTTP request, for
    tests of how servers start and accept, not of churnops."""
    del receive
    if scope["type"] != "http":
        return
    assert callable(send)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})

"""Fixtures shared by test packages."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from e2h.client import Client
from tests.server.helpers import WORKER_TOKEN, LiveServer


class Listener:
    """A loopback TCP listener for tests that check nothing connected to it."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(8)
        self.socket.setblocking(False)

    @property
    def port(self) -> int:
        return self.socket.getsockname()[1]

    def accepted(self) -> bool:
        """Whether a connection is waiting (it is accepted and closed)."""
        try:
            conn, _ = self.socket.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.socket.close()


@pytest.fixture
def api(server: LiveServer) -> Iterator[Client]:
    """A client with the worker token for the directory's own ``server`` fixture (a live server)."""
    with Client(server.url, token=WORKER_TOKEN) as c:
        yield c

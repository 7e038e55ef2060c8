"""NATS version checks for the embedded stack against real servers (or a socket speaking INFO)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from arforge.cli.stack import nats
from arforge.cli.stack.stack import Stack, StackError, StackOptions
from tests.conftest import free_port


class InfoServer:
    """A TCP server that greets every client with a NATS INFO line, then closes."""

    def __init__(self, info: dict[str, object]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        self.line = b"INFO " + json.dumps(info).encode() + b" \r\n"
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(self.line)

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def _old_server() -> Iterator[tuple[str, int]]:
    """Debian's nats-server 2.9 on 4222 when it runs here, else a socket claiming 2.9.10."""
    try:
        info = nats.read_info("127.0.0.1", 4222, timeout=1)
        if info.version < nats.MIN_VERSION:
            yield "127.0.0.1", 4222
            return
    except (OSError, ValueError):
        pass
    fake = InfoServer({"server_id": "X", "version": "2.9.10", "jetstream": True, "proto": 1})
    try:
        yield "127.0.0.1", fake.port
    finally:
        fake.close()


@pytest.fixture
def old_nats() -> Iterator[tuple[str, int]]:
    yield from _old_server()


def test_parse_version() -> None:
    assert nats.parse_version("2.10.3") == (2, 10, 3)
    assert nats.parse_version("v2.11.0-beta.2") == (2, 11, 0)
    assert nats.parse_version("2.9") == (2, 9, 0)
    with pytest.raises(ValueError):
        nats.parse_version("banana")


def test_parse_info_and_url() -> None:
    info = nats.parse_info(b'INFO {"version":"2.15.1","jetstream":true,"server_name":"a"}\r\n')
    assert info.version == (2, 15, 1) and info.jetstream and info.server_name == "a"
    with pytest.raises(ValueError):
        nats.parse_info(b"-ERR 'Authorization Violation'\r\n")
    assert nats.host_port("nats://u:p@example.org:4333") == ("example.org", 4333)
    assert nats.host_port("localhost") == ("localhost", 4222)
    assert nats.host_port("nats://a:1,nats://b:2") == ("a", 1)


def test_old_server_is_refused_with_a_sentence(old_nats: tuple[str, int]) -> None:
    host, port = old_nats
    with pytest.raises(nats.NatsUnsuitable) as e:
        nats.check_server(f"nats://{host}:{port}")
    msg = str(e.value)
    assert "2.9" in msg and "2.10.0 or newer" in msg


def test_server_without_jetstream_is_refused() -> None:
    fake = InfoServer({"version": "2.10.7", "jetstream": False})
    try:
        with pytest.raises(nats.NatsUnsuitable, match="JetStream disabled"):
            nats.check_server(f"nats://127.0.0.1:{fake.port}")
    finally:
        fake.close()


def test_nothing_listening_is_refused() -> None:
    with pytest.raises(nats.NatsUnsuitable, match="no NATS server answers"):
        nats.check_server(f"nats://127.0.0.1:{free_port()}", timeout=1)


def test_pinned_server_is_accepted(nats_server) -> None:  # type: ignore[no-untyped-def]
    info = nats.check_server(nats_server.url)
    assert info.version >= nats.MIN_VERSION and info.jetstream
    assert nats.server_binary().exists()


def test_stack_refuses_an_old_configured_server(tmp_path: Path, old_nats: tuple[str, int]) -> None:
    host, port = old_nats
    opts = StackOptions(
        data_dir=tmp_path / "data", nats_url=f"nats://{host}:{port}", api_port=free_port()
    )
    stack = Stack(opts, say=lambda _m: None)
    with pytest.raises(StackError, match=r"needs 2\.10\.0 or newer"):
        stack.start()
    assert stack.sup.children == []
    assert list((tmp_path / "data" / "run").glob("*.pid")) == []


def test_stack_never_attaches_to_a_port_it_did_not_start(
    tmp_path: Path, old_nats: tuple[str, int]
) -> None:
    _, port = old_nats
    opts = StackOptions(data_dir=tmp_path / "data", nats_port=port, api_port=free_port())
    stack = Stack(opts, say=lambda _m: None)
    with pytest.raises(StackError) as e:
        stack.start()
    msg = str(e.value)
    assert f"port {port} is already used by nats-server 2.9" in msg
    assert "--nats-port" in msg
    assert stack.sup.children == []

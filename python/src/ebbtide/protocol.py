"""The scheduler's wire protocol, from Python: the Cap'n Proto schema, framing with limits, the hello.

One TCP connection per peer, standard Cap'n Proto stream framing, one ``Message`` per frame (see
``ebbtide.capnp``, a copy of ``host/schema/ebbtide.capnp`` kept identical by ``tests/python.rs``).
Every connection opens with a hello (role, protocol version, identity, token); the scheduler answers
``welcome`` or ``goodbye`` with its reason. Decoded messages become plain Python tuples here, so no
other module touches pycapnp.
"""

from __future__ import annotations

import socket
import struct
import threading
from importlib import resources

import capnp

# Bumped with host/src/protocol/mod.rs PROTOCOL_VERSION; a hello with another version is refused.
PROTOCOL_VERSION = 1
# The largest frame the scheduler accepts: MAX_FRAME_BYTES in host/src/protocol/framing.rs.
MAX_FRAME_BYTES = 16 << 20
# Segments per frame the scheduler accepts (MAX_SEGMENTS there); our encoder always writes one.
MAX_SEGMENTS = 64

with resources.as_file(resources.files("ebbtide") / "ebbtide.capnp") as _path:
    schema = capnp.load(str(_path))

_Message = schema.Message


class ProtocolError(Exception):
    """A frame or message the protocol does not allow; the connection it came from is closed."""


def parse_address(address: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` (as the scheduler prints it) -> (host, port)."""
    bad = f"invalid address {address!r}: expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:8516"
    if not isinstance(address, str) or not address.startswith("tcp://"):
        raise ValueError(bad)
    host, sep, port = address[len("tcp://"):].rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(bad)
    return host, int(port)


def capabilities_list(capabilities: dict[str, int] | None) -> list[dict]:
    """``{"gpu": 1, "linux": -1}`` -> the schema's list (value -1: present, no quantity)."""
    out = []
    for name, value in (capabilities or {}).items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"capability name {name!r}: expected a non-empty string, e.g. {{'gpu': 1}}")
        if value is None or value is True:
            value = -1
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"capability {name!r}: the value must be an integer (-1: present, no quantity), got {value!r}")
        out.append({"name": name, "value": value})
    return out


def parse_capabilities(text: str) -> dict[str, int]:
    """``gpu=1,linux`` -> ``{"gpu": 1, "linux": -1}``, as ``ebbtide worker --capabilities`` reads it."""
    caps: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not name:
            raise ValueError(f"capability {part!r}: no name; expected e.g. gpu=1,linux")
        if sep:
            try:
                caps[name] = int(value.strip())
            except ValueError:
                raise ValueError(
                    f"capability {part!r}: the value must be an integer (or leave it out), e.g. gpu=1,linux"
                ) from None
        else:
            caps[name] = -1
    return caps


# --- encoding -------------------------------------------------------------------------------------


def encode(**union) -> bytes:
    """One frame: ``encode(taskCancel=5)``, ``encode(hello={...})``."""
    return _Message.new_message(**union).to_bytes()


def _words_for(data: bytes) -> int:
    """A first segment big enough for the whole message, so that every frame we write has one segment."""
    return len(data) // 8 + 256


def encode_task(task_id: int, function: str, payload: bytes, capabilities: list[dict]) -> bytes:
    message = _Message.new_message(num_first_segment_words=_words_for(payload) + sum(len(c["name"]) // 8 + 4 for c in capabilities))
    task = message.init("taskSubmit")
    task.id = task_id
    task.function = function
    task.payload = payload
    caps = task.init("capabilities", len(capabilities))
    for i, c in enumerate(capabilities):
        caps[i].name = c["name"]
        caps[i].value = c["value"]
    return message.to_bytes()


def encode_result(task_id: int, status: str, output: bytes) -> bytes:
    message = _Message.new_message(num_first_segment_words=_words_for(output))
    result = message.init("taskResult")
    result.id = task_id
    result.status = status
    result.output = output
    return message.to_bytes()


# --- decoding -------------------------------------------------------------------------------------


def decode(frame: bytes):
    """A frame -> ``(kind, value)`` with plain Python values:

    - ``("welcome", peer_id)``, ``("goodbye", reason)``, ``("taskCancel", task_id)``
    - ``("taskResult", (id, status, output))`` with status ``"done"``, ``"failed"`` or ``"cancelled"``
    - ``("taskSubmit", (id, function, payload, {name: value}))``
    - ``(kind, None)`` for any other message (ignored by clients and workers).
    """
    try:
        with _Message.from_bytes(frame, traversal_limit_in_words=MAX_FRAME_BYTES // 8, nesting_limit=16) as m:
            kind = m.which()
            if kind == "taskResult":
                r = m.taskResult
                return kind, (r.id, str(r.status), bytes(r.output))
            if kind == "taskSubmit":
                t = m.taskSubmit
                caps = {c.name: c.value for c in t.capabilities}
                return kind, (t.id, t.function, bytes(t.payload), caps)
            if kind == "taskCancel":
                return kind, m.taskCancel
            if kind == "welcome":
                return kind, m.welcome.peerId
            if kind == "goodbye":
                return kind, m.goodbye
            return kind, None
    except capnp.KjException as e:
        raise ProtocolError(f"malformed message: {e.description}") from None


# --- framing --------------------------------------------------------------------------------------


class FrameReader:
    """Reads frames from a socket with the scheduler's limits, buffering to keep system calls few."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._buf = bytearray()
        self._pos = 0

    def _fill(self, n: int) -> bool:
        """Ensures n unread bytes are buffered; False at end of stream with nothing unread."""
        while len(self._buf) - self._pos < n:
            if self._pos:
                del self._buf[: self._pos]
                self._pos = 0
            chunk = self._sock.recv(max(1 << 16, n - len(self._buf)))
            if not chunk:
                if len(self._buf) == self._pos:
                    return False
                raise ProtocolError("connection closed in the middle of a frame")
            self._buf += chunk
        return True

    def read(self) -> bytes | None:
        """The next frame (segment table included), or None when the peer closed between frames."""
        if not self._fill(4):
            return None
        (count,) = struct.unpack_from("<I", self._buf, self._pos)
        segments = count + 1
        if segments > MAX_SEGMENTS:
            raise ProtocolError(f"frame claims {segments} segments; at most {MAX_SEGMENTS} are accepted")
        # The sizes, one u32 per segment after the count, padded so that the header is whole words.
        table_len = (4 + 4 * segments + 7) // 8 * 8 - 4
        if not self._fill(4 + table_len):
            raise ProtocolError("connection closed in the middle of a frame")
        sizes = struct.unpack_from(f"<{segments}I", self._buf, self._pos + 4)
        total = 4 + table_len + 8 * sum(sizes)
        if total > MAX_FRAME_BYTES:
            raise ProtocolError(f"frame of {total} bytes exceeds the limit of {MAX_FRAME_BYTES} bytes")
        if not self._fill(total):
            raise ProtocolError("connection closed in the middle of a frame")
        frame = bytes(self._buf[self._pos : self._pos + total])
        self._pos += total
        return frame


class Connection:
    """A connection to the scheduler after a successful hello. ``send`` may be called from any thread;
    ``recv`` from one thread only."""

    def __init__(self, sock: socket.socket, peer_id: int, address: str):
        self.sock = sock
        self.peer_id = peer_id
        self.address = address
        self._reader = FrameReader(sock)
        self._send_lock = threading.Lock()

    @classmethod
    def open(cls, address: str, role: str, identity: str, token: str, timeout: float) -> "Connection":
        """Connects and says hello; raises ConnectionError naming the address and the reason."""
        from .errors import SchedulerUnreachable, SchedulerRefused

        host, port = parse_address(address)
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise SchedulerUnreachable(
                f"cannot connect to the scheduler at {address} within {timeout:g} s: {e.strerror or e}; "
                "is `ebbtide scheduler` (or `ebbtide up`) running there?"
            ) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            hello = {"role": role, "protocolVersion": PROTOCOL_VERSION, "identity": identity, "token": token}
            sock.sendall(encode(hello=hello))
            connection = cls(sock, 0, address)
            frame = connection._reader.read()
        except (OSError, ProtocolError) as e:
            sock.close()
            raise SchedulerUnreachable(f"the scheduler at {address} did not answer the hello within {timeout:g} s: {e}") from None
        kind, value = decode(frame) if frame is not None else (None, None)
        if kind == "welcome":
            sock.settimeout(None)
            connection.peer_id = value
            return connection
        sock.close()
        if kind == "goodbye":
            raise SchedulerRefused(f"the scheduler at {address} refused the connection: {value}")
        if kind is None:
            raise SchedulerRefused(f"the scheduler at {address} closed the connection during the hello")
        raise SchedulerRefused(f"the scheduler at {address} answered the hello with a {kind} message")

    def send(self, frames: bytes) -> None:
        """Writes already-encoded frames, several at once when given several."""
        with self._send_lock:
            self.sock.sendall(frames)

    def recv(self):
        """The next message as ``(kind, value)`` (see ``decode``), or None when the scheduler closed."""
        frame = self._reader.read()
        return None if frame is None else decode(frame)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

"""A local SMTP sink for the demo: accepts every message and counts it, delivers nothing."""

from __future__ import annotations

import socketserver
import threading

__all__ = ["SmtpSink"]


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def _say(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self._say("220 streamtasks-demo ESMTP sink")
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            cmd = raw.decode(errors="replace").strip().upper()
            if cmd.startswith(("EHLO", "HELO")):
                self._say("250 streamtasks-demo")
            elif cmd.startswith(("MAIL FROM", "RCPT TO", "RSET", "NOOP")):
                self._say("250 OK")
            elif cmd == "DATA":
                self._say("354 end with <CRLF>.<CRLF>")
                while self.rfile.readline() not in (b".\r\n", b".\n", b""):
                    pass
                with self.server.lock:
                    self.server.received += 1
                self._say("250 OK queued")
            elif cmd == "QUIT":
                self._say("221 bye")
                return
            else:
                self._say("502 not implemented")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int]) -> None:
        super().__init__(addr, _Handler)
        self.lock = threading.Lock()
        self.received = 0


class SmtpSink:
    """``with SmtpSink() as sink: ... sink.address ... sink.received``"""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def received(self) -> int:
        return self._server.received

    def __enter__(self) -> SmtpSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

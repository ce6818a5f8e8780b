"""A WebSocket-to-TCP gateway that behaves like jupyter-server-proxy's raw
socket handler (jupyter_server_proxy/rawsocket.py), the way JupyterHub's
jupyter-sshd-proxy exposes sshd: a tornado WebSocketHandler whose open()
connects to the target with asyncio, each block the target sends becomes one
binary WebSocket message, each message received is written to the target.

Like the real handler it never sets TCP_NODELAY towards the client (tornado
turns Nagle back on after the 101 response), and with --nagle-backend it
leaves Nagle on towards the target too (asyncio would set TCP_NODELAY there):
every small write then waits for the peer's delayed ACK unless the peer sends
something back first.

Requests need "Authorization: token T" with the token from --token-file,
as a Jupyter server does; a wrong or missing one is a 403.

Usage: rawsocket.py --port P --target HOST:PORT --token-file F --path /user/NAME/sshd/
It prints "listening" on stdout once it accepts connections.
"""

import argparse
import asyncio
import socket
import sys

from tornado import web, websocket


def nagle_on(sock):
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)


class RawSocketProtocol(asyncio.Protocol):
    def __init__(self, handler):
        self.handler = handler

    def data_received(self, data):
        self.handler.write_message(data, binary=True)

    def connection_lost(self, exc):
        self.handler.close()


class RawSocketHandler(websocket.WebSocketHandler):
    def initialize(self, opts):
        self.opts = opts
        self.transp = None

    def prepare(self):
        auth = self.request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() not in ("token", "bearer") or token.strip() != self.opts.token:
            raise web.HTTPError(403)

    async def open(self):
        loop = asyncio.get_running_loop()
        host, _, port = self.opts.target.rpartition(":")
        self.transp, _ = await loop.create_connection(lambda: RawSocketProtocol(self), host, int(port))
        # The client side: tornado leaves Nagle on after the handshake;
        # make sure of it whatever the tornado version.
        nagle_on(self.ws_connection.stream.socket)
        if self.opts.nagle_backend:
            nagle_on(self.transp.get_extra_info("socket"))

    def on_message(self, message):
        if isinstance(message, str):
            message = message.encode("utf-8")
        self.transp.write(message)

    def on_close(self):
        if self.transp is not None:
            self.transp.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--path", default="/sshd/")
    ap.add_argument("--nagle-backend", action="store_true")
    opts = ap.parse_args()
    with open(opts.token_file) as f:
        opts.token = f.read().strip()
    app = web.Application([(opts.path, RawSocketHandler, {"opts": opts})])
    app.listen(opts.port, address="127.0.0.1")
    print("listening", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)

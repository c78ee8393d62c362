"""WsUpstream: a real WebSocket server (Debian's python3-websockets) on a free loopback
port, run on an asyncio loop in a thread of its own, for the tunnel tests
(test_gw_websocket.py). Every path echoes what it gets, except:

  /flood?n=N&size=S   sends N binary messages of S bytes as fast as it may, then waits
  /hello              sends "hello" first, then echoes
  /close              closes at once with code 1000

handshakes: the request headers of every handshake it accepted (lower-case names), in
order; closed: how many of its connections have ended, and with which close code."""

import asyncio
import http
import threading
from urllib.parse import parse_qs, urlsplit

import websockets


class WsUpstream:
    def __init__(self, host="127.0.0.1", refuse_status=None):
        self.handshakes = []
        self.closed = []            # close codes of connections that ended
        self.refuse_status = refuse_status
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._server = None
        self._thread = threading.Thread(target=self._run, args=(host,), daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the WebSocket upstream did not start")
        self.url = f"http://{host}:{self.port}"

    async def _process_request(self, path, headers):
        if self.refuse_status:
            return (http.HTTPStatus(self.refuse_status), [("Content-Type", "text/plain")],
                    b"refused\n")
        # recorded here, before the 101 goes out, so a test that has seen the 101 sees this
        self.handshakes.append({k.lower(): v for k, v in headers.raw_items()})
        return None

    async def _handler(self, ws, path=None):
        path = path or ws.path
        u = urlsplit(path)
        try:
            if u.path.endswith("/close"):
                await ws.close(1000, "bye")
                return
            if u.path.endswith("/flood"):
                q = parse_qs(u.query)
                n, size = int(q.get("n", ["100"])[0]), int(q.get("size", ["65536"])[0])
                block = b"x" * size
                for _ in range(n):
                    await ws.send(block)
                await ws.wait_closed()
                return
            if u.path.endswith("/hello"):
                await ws.send("hello")
            async for msg in ws:
                await ws.send(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.append(ws.close_code)

    def _run(self, host):
        asyncio.set_event_loop(self._loop)

        async def start():
            self._server = await websockets.serve(self._handler, host, 0,
                                                  process_request=self._process_request,
                                                  max_size=None, ping_interval=None,
                                                  close_timeout=1)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def stop(self):
        async def close():
            self._server.close()
            await self._server.wait_closed()

        fut = asyncio.run_coroutine_threadsafe(close(), self._loop)
        try:
            fut.result(timeout=15)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

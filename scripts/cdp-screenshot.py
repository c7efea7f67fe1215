#!/usr/bin/env python3
"""Screenshots of pages that render after load (the Aspire dashboard is a Blazor Server app, so Chromium's own
--screenshot shoots a blank page): drives an already running headless Chromium over the DevTools protocol, with
nothing but the standard library.

    cdp-screenshot.py DEVTOOLS_PORT OUT.png URL [TEXT ...]

Opens URL in the first page target, waits (up to 60 s) until the page's text contains every TEXT, waits
$SETTLE_SECONDS more (default 1; charts draw after their data arrives), and writes a PNG. Exit code 1 with a one-line reason when it cannot."""

import base64
import json
import os
import socket
import struct
import sys
import time
import urllib.request


class DevTools:
    """A minimal WebSocket client (RFC 6455: client frames masked, text only) speaking CDP."""

    def __init__(self, ws_url):
        host_port, path = ws_url[len("ws://"):].split("/", 1)
        host, port = host_port.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(4096)
        if b" 101 " not in response.split(b"\r\n")[0]:
            raise RuntimeError("DevTools refused the WebSocket: " + response.split(b"\r\n")[0].decode())
        self.buffer = response.split(b"\r\n\r\n", 1)[1]
        self.next_id = 0

    def _send(self, text):
        payload = text.encode()
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", len(payload))
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _receive(self):
        message = b""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            message += self._read(length)
            if first & 0x80:  # FIN
                return json.loads(message)

    def call(self, method, **params):
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = self._receive()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    port, out, url, texts = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
    page = next(t for t in targets if t.get("type") == "page")
    devtools = DevTools(page["webSocketDebuggerUrl"])
    devtools.call("Page.enable")
    devtools.call("Page.navigate", url=url)
    deadline = time.time() + 60
    text = ""
    while time.time() < deadline:
        time.sleep(0.5)
        text = devtools.call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''",
                             returnByValue=True).get("result", {}).get("value", "") or ""
        if all(t in text for t in texts):
            break
    else:
        missing = [t for t in texts if t not in text]
        print(f"cdp-screenshot: {url} never showed {missing}", file=sys.stderr)
        return 1
    time.sleep(float(os.environ.get("SETTLE_SECONDS", "1")))
    shot = devtools.call("Page.captureScreenshot", format="png")
    with open(out, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # one line, never a stack trace
        print(f"cdp-screenshot: {e}", file=sys.stderr)
        sys.exit(1)

#!/usr/bin/env python3
"""Real render time and weight of the operations page, in headless Chromium on real time (the
browser test runs on virtual time, where the page's own timer reads 0.0 ms).

Starts Chromium with the DevTools protocol on loopback, opens ADMIN/admin/#token=TOKEN, lets
the page poll for SECONDS, then reads the render time the page measured for its last poll
(`render-ms`: status JSON to all charts and tables drawn) through Runtime.evaluate, over a
minimal WebSocket client (standard library only).

    python3 scripts/ops-page-render.py http://127.0.0.1:8003 TOKEN [SECONDS]
"""
import base64, json, os, shutil, socket, struct, subprocess, sys, tempfile, time, urllib.request


def ws_connect(url):
    host_port, path = url[len("ws://"):].split("/", 1)
    host, port = host_port.split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    return s


def ws_send(s, text):
    data = text.encode()
    mask = os.urandom(4)
    n = len(data)
    hdr = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
    s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def ws_recv(s):
    def exact(k):
        b = b""
        while len(b) < k:
            chunk = s.recv(k - len(b))
            if not chunk:
                raise EOFError
            b += chunk
        return b
    b0, b1 = exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", exact(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", exact(8))[0]
    return exact(n).decode()


def main():
    admin, token = sys.argv[1], sys.argv[2]
    secs = float(sys.argv[3]) if len(sys.argv) > 3 else 8
    port = 19333
    prof = tempfile.mkdtemp()
    chrome = subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                               "--disable-dev-shm-usage", "--window-size=1280,1500",
                               f"--remote-debugging-port={port}", f"--user-data-dir={prof}",
                               f"{admin}/admin/#token={token}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            try:
                tabs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2))
                page = next(t for t in tabs if t.get("type") == "page")
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        time.sleep(secs)
        s = ws_connect(page["webSocketDebuggerUrl"])
        expr = ("JSON.stringify({render: document.getElementById('render-ms').textContent,"
                " bytes: document.documentElement.outerHTML.length,"
                " transfer: performance.getEntriesByType('navigation')[0].transferSize})")
        ws_send(s, json.dumps({"id": 1, "method": "Runtime.evaluate", "params": {"expression": expr}}))
        while True:
            msg = json.loads(ws_recv(s))
            if msg.get("id") == 1:
                print(msg["result"]["result"]["value"])
                break
    finally:
        chrome.kill()
        chrome.wait()
        shutil.rmtree(prof, ignore_errors=True)


main()

#!/usr/bin/env python3
"""The docker CLI's own floor: a stand-in Docker Engine API server that answers the requests
of `docker run --rm IMAGE CMD` and `docker exec CTR CMD` at once, without running anything.

    python3 bench/cli-floor.py /path/to/floor.sock [LIST.json]

bench/daemon.sh times the same docker CLI commands against it: no daemon can make a command
faster than that, so it bounds the ratios a daemon can reach against dockerd on this machine.
The answers are the ones the docker CLI needs (observed on the wire): ping, create, a hijacked
attach that ends when the container "exits", wait (chunked, answered after start), start,
container inspect, exec create/start/inspect, version; and `GET /containers/json` with the contents of LIST.json
(read at each request, so it can be written after the server started), for `docker ps -a`.
"""
import json
import os
import re
import socket
import sys
import threading

CID = "f" * 64
EID = "e" * 64
HEADERS = ("Api-Version: 1.47\r\nOstype: linux\r\nServer: Docker/27.0.0 (linux)\r\n"
           "Docker-Experimental: false\r\n")
# Start releases the attach stream and the wait answer that came before it: each waits
# until the count of starts has passed what it was when its request arrived.
starts = 0
cond = threading.Condition()


def seen_starts():
    with cond:
        return starts


def note_start():
    global starts
    with cond:
        starts += 1
        cond.notify_all()


def await_start(before):
    with cond:
        cond.wait_for(lambda: starts > before, timeout=5)


def handle(conn):
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                conn.close()
                return
            buf += data
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        fields = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        n = int(fields.get("content-length", "0"))
        while len(buf) < n:
            buf += conn.recv(65536)
        buf = buf[n:]
        # Whatever API version the CLI settled on: /v1.47/containers/... -> /containers/...
        path = re.sub(r"^/v[0-9.]+/", "/", path.split("?", 1)[0])

        def send(status, body=b"", ctype="application/json"):
            conn.sendall(f"HTTP/1.1 {status}\r\n{HEADERS}Content-Type: {ctype}\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

        if path == "/_ping":
            send("200 OK", b"" if method == "HEAD" else b"OK", "text/plain")
        elif path.endswith("/containers/create"):
            send("201 Created", json.dumps({"Id": CID, "Warnings": []}).encode())
        elif path.endswith("/attach") or (path.startswith("/exec/") and path.endswith("/start")):
            before = seen_starts()
            conn.sendall(f"HTTP/1.1 101 UPGRADED\r\n{HEADERS}"
                         "Content-Type: application/vnd.docker.multiplexed-stream\r\n"
                         "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode())
            if path.endswith("/attach"):
                await_start(before)
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):
                pass
            conn.close()
            return
        elif path.endswith("/wait"):
            before = seen_starts()
            conn.sendall(f"HTTP/1.1 200 OK\r\n{HEADERS}Content-Type: application/json\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n".encode())
            await_start(before)
            body = b'{"Error":null,"StatusCode":0}\n'
            conn.sendall(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        elif path.endswith("/start"):
            note_start()
            send("204 No Content", b"", "text/plain")
        elif path.endswith("/exec"):
            send("201 Created", json.dumps({"Id": EID}).encode())
        elif path.startswith("/exec/") and path.endswith("/json"):
            send("200 OK", json.dumps({
                "ID": EID, "Running": False, "ExitCode": 0, "Pid": 0, "ContainerID": CID,
                "OpenStdin": False, "OpenStdout": True, "OpenStderr": True,
                "ProcessConfig": {"entrypoint": "true", "arguments": [], "tty": False}}).encode())
        elif path == "/containers/json" and LIST:
            try:
                with open(LIST, "rb") as f:
                    send("200 OK", f.read())
            except OSError:
                send("200 OK", b"[]")
        elif path.startswith("/containers/") and path.endswith("/json"):
            send("200 OK", json.dumps({"Id": CID, "State": {"Running": True, "Status": "running"},
                                       "Config": {"Tty": False}}).encode())
        elif path.endswith("/version"):
            send("200 OK", json.dumps({"Version": "27.0.0", "ApiVersion": "1.47",
                                       "MinAPIVersion": "1.24", "Os": "linux",
                                       "Arch": "amd64"}).encode())
        else:
            sys.stderr.write(f"cli-floor.py: no answer for {method} {path}\n")
            send("404 Not Found", b'{"message":"not served by cli-floor.py"}')


LIST = None


def main():
    global LIST
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: cli-floor.py SOCKET [LIST.json]")
    path = sys.argv[1]
    LIST = sys.argv[2] if len(sys.argv) == 3 else None
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(64)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Tiny counting HTTP proxy for bench/s3.sh.

    count_proxy.py LISTEN_PORT UPSTREAM_PORT STATS_FILE

Threaded HTTP/1.1 (keep-alive) server on 127.0.0.1:LISTEN_PORT; every request is forwarded to
127.0.0.1:UPSTREAM_PORT (moto) and counted by kind with its request-body bytes (Content-Length,
or de-chunked Transfer-Encoding: chunked) and response-body bytes. Kinds are the HTTP methods,
except that a GET of a bucket (no object key: ListObjects and the like) counts as LIST. Each
client connection keeps one upstream connection (reopened if moto closes it). The running
totals are rewritten to STATS_FILE as JSON after every request
({"KIND": [requests, bytes_up, bytes_down]}); bench/s3.sh reads it before and after each step.
Each request is also printed on stdout: KIND PATH STATUS up=BYTES down=BYTES.
"""
import http.client
import http.server
import json
import os
import sys
import threading
import urllib.parse

LISTEN, UPSTREAM, STATS = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
stats = {}
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


def count(kind, up, down):
    with lock:
        s = stats.setdefault(kind, [0, 0, 0])
        s[0] += 1
        s[1] += up
        s[2] += down
        tmp = STATS + ".tmp"
        with open(tmp, "w") as f:
            json.dump(stats, f)
        os.replace(tmp, STATS)


def kind_of(method, path):
    if method != "GET":
        return method
    p = urllib.parse.urlsplit(path).path.strip("/")
    return "LIST" if "/" not in p else "GET"  # path-style: /bucket[?list-type=2...] vs /bucket/key


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = None

    def log_message(self, *a):
        pass

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send_upstream(self, body, headers):
        for attempt in (0, 1):  # a kept-alive upstream connection may have been closed by moto
            if self.upstream is None:
                self.upstream = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=600)
            try:
                self.upstream.request(self.command, self.path, body=body, headers=headers)
                resp = self.upstream.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.upstream.close()
                    self.upstream = None
                return resp, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.upstream.close()
                self.upstream = None
                if attempt:
                    raise

    def forward(self):
        body = self.read_body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        try:
            resp, data = self.send_upstream(body, headers)
        except Exception as e:  # upstream failure: answer 502, keep the client connection usable
            count("ERROR", len(body), 0)
            msg = f"proxy: {e}".encode()
            self.send_response(502)
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        kind = kind_of(self.command, self.path)
        count(kind, len(body), len(data))
        print(f"{kind} {self.path} {resp.status} up={len(body)} down={len(data)}", flush=True)
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() in HOP or (k.lower() == "content-length" and self.command != "HEAD"):
                continue
            self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    def finish(self):
        if self.upstream is not None:
            self.upstream.close()
        super().finish()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


with open(STATS, "w") as f:
    json.dump(stats, f)
Server(("127.0.0.1", LISTEN), Handler).serve_forever()

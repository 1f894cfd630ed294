#!/usr/bin/env python3
"""A vit service client in Python, written from service/PROTOCOL.md alone.

It speaks VITC01 to a vit worker (`vit serve --bind`) or broker (`vit
broker`): a DEALER socket, requests of [b"", b"VITC01", b"\\x01", service,
request id, JSON header, image bytes...], replies matched by request id, and
Lazy Pirate retries on a fresh socket. It needs only pyzmq (Debian's
python3-zmq).

    vit_client.py --connect tcp://127.0.0.1:5555 classify [--top-k K] IMAGE...
    vit_client.py --connect EP embed-image IMAGE...
    vit_client.py --connect EP embed-text TEXT...
    vit_client.py --connect EP match --text T [--text T]... IMAGE...
    vit_client.py --connect EP info|health|metrics
    vit_client.py --connect BROKER_EP --service mmi.broker info|health

(the last asks the broker itself, PROTOCOL.md section 7.2). classify prints what `vit classify` prints (text format); the others print
JSON, one object per line.
"""
import argparse
import itertools
import json
import os
import struct
import sys

import zmq

PROTOCOL = b"VITC01"
REQUEST, FINAL = b"\x01", b"\x03"


class ServiceError(Exception):
    """An error reply: .code is machine-readable (PROTOCOL.md section 4)."""

    def __init__(self, error):
        self.code = error.get("code", "internal")
        self.index = error.get("index")
        super().__init__(error.get("message", self.code))


class Client:
    def __init__(self, endpoint, service="", timeout_ms=5000, retries=2):
        self.endpoint = endpoint
        self.service = service.encode()
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.ctx = zmq.Context()
        self.sock = None
        self.ids = itertools.count(1)

    def _open(self):
        if self.sock is not None:
            self.sock.close(linger=0)
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(self.endpoint)

    def call(self, header, frames=()):
        """Sends one request; returns (body dict, data frames)."""
        rid = ("%d-%d" % (os.getpid(), next(self.ids))).encode()
        msg = [b"", PROTOCOL, REQUEST, self.service, rid,
               json.dumps(header).encode()] + list(frames)
        for _ in range(self.retries + 1):
            if self.sock is None:
                self._open()
            self.sock.send_multipart(msg, copy=False)
            poller = zmq.Poller()
            poller.register(self.sock, zmq.POLLIN)
            while poller.poll(self.timeout_ms):
                reply = self.sock.recv_multipart()
                if (len(reply) >= 6 and reply[0] == b"" and
                        reply[1] == PROTOCOL and reply[2] == FINAL and
                        reply[4] == rid):
                    body = json.loads(reply[5])
                    if not body.get("ok"):
                        raise ServiceError(body.get("error", {}))
                    return body, reply[6:]
                # A late reply to an earlier request: not ours, dropped.
            # Lazy Pirate: a fresh socket, and the request again.
            self.sock.close(linger=0)
            self.sock = None
        raise TimeoutError("no reply from %s after %d tries"
                           % (self.endpoint, self.retries + 1))

    def close(self):
        if self.sock is not None:
            self.sock.close(linger=0)
        self.ctx.term()


def f32(x):
    """The float32 the server computed (JSON carries 9 digits of it)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def embeddings(body, data):
    n, dim = body["count"], body["dim"]
    flat = struct.unpack("<%df" % (n * dim), data[0])
    return [list(flat[i * dim:(i + 1) * dim]) for i in range(n)]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--connect", required=True)
    p.add_argument("--service", default="")
    p.add_argument("--timeout", type=int, default=5000)
    p.add_argument("--retries", type=int, default=2)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--text", action="append", default=[])
    p.add_argument("op", choices=["classify", "embed-image", "embed-text",
                                  "match", "info", "health", "metrics"])
    p.add_argument("items", nargs="*")
    a = p.parse_args()
    c = Client(a.connect, a.service, a.timeout, a.retries)
    status = 0
    try:
        if a.op in ("info", "health", "metrics"):
            body, _ = c.call({"op": a.op})
            print(json.dumps(body))
        elif a.op == "embed-text":
            body, data = c.call({"op": "embed_text", "texts": a.items})
            for t, e in zip(a.items, embeddings(body, data)):
                print(json.dumps({"text": t, "embedding": e}))
        else:
            for path in a.items:
                with open(path, "rb") as f:
                    image = f.read()
                try:
                    if a.op == "classify":
                        body, _ = c.call({"op": "classify", "top_k": a.top_k},
                                         [image])
                        print(path)
                        for lab in body["results"][0]["labels"]:
                            print("  %.4f  %s (%d)" % (f32(lab["score"]),
                                                       lab["label"], lab["id"]))
                    elif a.op == "embed-image":
                        body, data = c.call({"op": "embed_image"}, [image])
                        print(json.dumps({"path": path,
                                          "embedding": embeddings(body, data)[0]}))
                    else:
                        body, _ = c.call({"op": "match", "texts": a.text},
                                         [image])
                        print(json.dumps({"path": path,
                                          "probs": body["results"][0]["probs"]}))
                except ServiceError as e:
                    print("vit_client.py: %s: %s (%s)" % (path, e, e.code),
                          file=sys.stderr)
                    status = 1
    except ServiceError as e:
        print("vit_client.py: %s (%s)" % (e, e.code), file=sys.stderr)
        status = 1
    except TimeoutError as e:
        print("vit_client.py: %s" % e, file=sys.stderr)
        status = 1
    finally:
        c.close()
    return status


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Tests of models/fetch against a local stand-in for the Hugging Face hub:
two http.server instances on 127.0.0.1 (ephemeral ports), one playing the
hub ($HF_ENDPOINT/{repo}/resolve/{revision}/{file}, X-Repo-Commit,
X-Linked-Etag / X-Linked-Size, X-Error-Code, gated repositories) and one
playing the CDN the hub redirects LFS files to, both serving copies of the
tiny test checkpoints under tests/fixtures, with faults on demand (a
connection dropped mid-file, Range ignored, a wrong sha256, a stall). No
network is used. Run from anywhere: `python3 models/fetch_test.py`; the
fetched models are checked by running build/vit (or $VIT_BIN) on them.
Prints `N passed, N failed`; exits 1 if any failed.
"""

import concurrent.futures
import fcntl
import hashlib
import http.server
import json
import os
import pty
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import traceback
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FETCH = os.path.join(ROOT, "models", "fetch")
FIX = os.path.join(ROOT, "tests", "fixtures")
VIT = os.environ.get("VIT_BIN") or os.path.join(ROOT, "build", "vit")
if not os.path.isabs(VIT):
    VIT = os.path.join(ROOT, VIT)
TOKEN = "hf_test_token_1234"
RUN_TIMEOUT = 20


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def commit_of(s):
    return hashlib.sha1(s.encode()).hexdigest()


def files_of(fixture, names=None):
    d = os.path.join(FIX, fixture)
    out = {}
    for n in sorted(os.listdir(d)):
        if names is None or n in names:
            with open(os.path.join(d, n), "rb") as f:
                out[n] = f.read()
    return out


class Repo:
    def __init__(self, files, gated=False, refs=None):
        self.files = files                  # revision "main"
        self.commit = commit_of(repr(sorted(files)) + str(id(self)))
        self.gated = gated
        self.refs = refs or {}              # other revision -> files


class State:
    """What one test's two servers serve, the faults to inject, and a log of
    every request they saw."""

    def __init__(self, repos):
        self.repos = repos
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.reset()

    def reset(self):
        with self.lock:
            self.log = []
            self.drop_after = {}     # file name -> bytes sent, first GET only
            self.ignore_range = False
            self.bad_etag = set()
            self.bad_size = set()
            self.stall = {}          # file name -> bytes sent before stalling

    def record(self, who, handler):
        with self.lock:
            headers = {k.lower(): v for k, v in handler.headers.items()}
            self.log.append((who, handler.command, handler.path, headers))

    def requests(self, who=None, method=None):
        with self.lock:
            return [e for e in self.log
                    if (who is None or e[0] == who)
                    and (method is None or e[1] == method)]


def is_lfs(name):
    return name.endswith(".safetensors") or name.endswith(".bin")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    who = "?"

    def log_message(self, *a):
        pass

    def do_HEAD(self):
        self.handle_any(head=True)

    def do_GET(self):
        self.handle_any(head=False)

    def error(self, code, err_code=None, msg=None, extra=None):
        body = json.dumps({"error": msg or ""}).encode()
        self.send_response(code)
        if err_code:
            self.send_header("X-Error-Code", err_code)
        if msg:
            self.send_header("X-Error-Message", msg)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def serve(self, name, data, head, extra):
        """Sends data, honouring Range, with the faults asked for."""
        rng = self.headers.get("Range")
        start = 0
        code = 200
        if rng and not self.server.state.ignore_range:
            m = re.match(r"^bytes=(\d+)-$", rng)
            start = int(m.group(1)) if m else 0
            if start >= len(data):
                return self.error(416, extra={
                    "Content-Range": "bytes */%d" % len(data)})
            code = 206
        body = data[start:]
        self.send_response(code)
        for k, v in extra.items():
            self.send_header(k, v)
        if code == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" %
                             (start, len(data) - 1, len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        state = self.server.state
        with state.lock:
            drop = state.drop_after.pop(name, None)
            stall = state.stall.get(name)
        if drop is not None or stall is not None:
            n = drop if drop is not None else stall
            self.wfile.write(body[:n])
            self.wfile.flush()
            if stall is not None:
                state.release.wait(30)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.wfile.write(body)


class HubHandler(Handler):
    who = "hub"

    def handle_any(self, head):
        state = self.server.state
        state.record(self.who, self)
        m = re.match(r"^/(.+?)/resolve/([^/]+)/(.+)$", self.path)
        if not m:
            return self.error(404, "EntryNotFound", "bad path")
        repo_id = m.group(1)
        rev = urllib.parse.unquote(m.group(2))
        name = urllib.parse.unquote(m.group(3))
        repo = state.repos.get(repo_id)
        if repo is None:
            return self.error(401, "RepoNotFound", "Repository not found")
        if repo.gated:
            auth = self.headers.get("Authorization")
            if auth != "Bearer " + TOKEN:
                return self.error(
                    401 if auth is None else 403, "GatedRepo",
                    "Access to model %s is restricted" % repo_id)
        if rev in ("main", repo.commit):
            files, commit = repo.files, repo.commit
        elif rev in repo.refs:
            files, commit = repo.refs[rev], commit_of(rev + repo.commit)
        elif rev == commit_of(next(iter(repo.refs), "") + repo.commit):
            files, commit = repo.refs[next(iter(repo.refs))], rev
        else:
            return self.error(404, "RevisionNotFound",
                              "Invalid rev id: %s" % rev)
        if name not in files:
            return self.error(404, "EntryNotFound", "Entry not found",
                              {"X-Repo-Commit": commit})
        data = files[name]
        digest = sha256(data)
        if is_lfs(name):
            etag = sha256(b"not the file") if name in state.bad_etag \
                else digest
            size = len(data) + 1 if name in state.bad_size else len(data)
            self.send_response(302)
            self.send_header("Location", "%s/lfs/%s/%s" %
                             (state.cdn_url, digest, urllib.parse.quote(name)))
            self.send_header("X-Repo-Commit", commit)
            self.send_header("X-Linked-Etag", '"%s"' % etag)
            self.send_header("X-Linked-Size", str(size))
            self.send_header("ETag", 'W/"%s"' % commit[:20])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        git = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        self.serve(name, data, head, {"X-Repo-Commit": commit,
                                      "ETag": '"%s"' % git})


class CdnHandler(Handler):
    who = "cdn"

    def handle_any(self, head):
        state = self.server.state
        state.record(self.who, self)
        m = re.match(r"^/lfs/([0-9a-f]{64})/(.+)$", self.path)
        if not m:
            return self.error(404)
        digest, name = m.group(1), urllib.parse.unquote(m.group(2))
        for repo in state.repos.values():
            for files in [repo.files] + list(repo.refs.values()):
                data = files.get(name)
                if data is not None and sha256(data) == digest:
                    # A CDN's own etag: an md5, not the sha256.
                    return self.serve(name, data, head, {
                        "ETag": '"%s"' % hashlib.md5(data).hexdigest()})
        return self.error(404)


def start(handler, state):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    srv.state = state
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, "http://127.0.0.1:%d" % srv.server_address[1]


# --- one test's world: its hub, its CDN, its folder ------------------------

class Ctx:
    def __init__(self, repos, tmp):
        # Each test gets its own copies of the repositories (some move a
        # commit) and its own servers, so tests can run side by side.
        self.state = State({k: Repo(dict(r.files), r.gated, dict(r.refs))
                            for k, r in repos.items()})
        self.tmp = tmp
        self.hub, self.hub_url = start(HubHandler, self.state)
        self.cdn, self.state.cdn_url = start(CdnHandler, self.state)

    def close(self):
        self.state.release.set()
        for srv in (self.hub, self.cdn):
            srv.shutdown()
            srv.server_close()

    def env(self, token=None, hf_home=None, endpoint=None):
        env = {k: v for k, v in os.environ.items()
               if not k.upper().startswith(("HF_", "HUGGINGFACE"))
               and k.lower() not in ("http_proxy", "https_proxy",
                                     "all_proxy", "no_proxy")}
        env["HF_ENDPOINT"] = endpoint or self.hub_url
        env["HF_HOME"] = hf_home or os.path.join(self.tmp, "hf-home-empty")
        if token:
            env["HF_TOKEN"] = token
        return env

    def fetch(self, *args, token=None, hf_home=None, script=FETCH,
              endpoint=None):
        p = subprocess.run([sys.executable, script] + list(args),
                           cwd=self.tmp,
                           env=self.env(token, hf_home, endpoint),
                           capture_output=True, text=True,
                           timeout=RUN_TIMEOUT)
        return p.returncode, p.stdout, p.stderr

    def out(self, name):
        return os.path.join(self.tmp, "out", name)

    def repo(self, name):
        return self.state.repos[name]


def vit(*args):
    p = subprocess.run([VIT] + list(args), cwd=ROOT, capture_output=True,
                       text=True, timeout=RUN_TIMEOUT)
    assert p.returncode == 0, "vit %s: rc %d: %s" % (
        " ".join(args), p.returncode, p.stderr)
    return p.stdout


def staging(d):
    parent, base = os.path.split(d)
    return os.path.join(parent, "." + base + ".part")


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def check_fetched(c, d, repo, names, rc, so, se):
    check(rc == 0, "rc %d, stderr: %s" % (rc, se))
    check(os.path.samefile(os.path.join(c.tmp, so.strip()), d),
          "stdout %r is not %s" % (so, d))
    got = sorted(os.listdir(d))
    check(got == sorted(names + [".fetch.json"]),
          "files %s, want %s" % (got, sorted(names)))
    files = c.repo(repo).files
    for n in names:
        with open(os.path.join(d, n), "rb") as f:
            check(f.read() == files[n], "%s differs from the served file" % n)
    check(not os.path.exists(staging(d)), "staging left behind")
    rec = json.load(open(os.path.join(d, ".fetch.json")))
    check(rec["repo"] == repo and rec["commit"] == c.repo(repo).commit
          and rec["complete"] is True, "record %r" % rec)
    check(sorted(rec["files"]) == sorted(names), "record files")


def check_nothing_left(d, top):
    check(not os.path.exists(d), "%s exists" % d)
    check(not os.path.exists(staging(d)), "staging %s left" % staging(d))
    check(not os.path.exists(top), "parent %s left" % top)


VIT_FILES = ["config.json", "model.safetensors", "preprocessor_config.json"]
OC_FILES = ["open_clip_config.json", "open_clip_model.safetensors",
            "merges.txt", "tokenizer_config.json", "vocab.json"]


# --- the tests -----------------------------------------------------------

def test_usage_and_help(c):
    rc, so, se = c.fetch("--help")
    check(rc == 0, "--help rc %d" % rc)
    for word in ("HF_ENDPOINT", "HF_TOKEN", "Range", "sha256", "--revision",
                 "model.safetensors.index.json", "exit status"):
        check(word in so, "--help does not mention %s" % word)
    for args in ([], ["a/../b"], ["ok/id", "--retries", "-1"]):
        rc, so, se = c.fetch(*args)
        check(rc == 2, "%s: rc %d, want 2" % (args, rc))
        check("usage:" in se, "%s: no usage on stderr" % args)


def test_full_fetch_then_classify(c):
    d = c.out("vit")
    rc, so, se = c.fetch("test/vit-tiny", d)
    check_fetched(c, d, "test/vit-tiny", VIT_FILES, rc, so, se)
    check(se == "", "stderr not quiet when not a terminal: %r" % se)
    # Only what vit needs was asked for; after the first HEAD, every file
    # came from the pinned commit; the weights came through the CDN.
    commit = c.state.repos["test/vit-tiny"].commit
    hub = c.state.requests("hub")
    for _, method, path, _ in hub:
        check(not re.search(r"(README\.md|pytorch_model\.bin|ref_\w+\.npy)$",
                            path), "asked for %s" % path)
    check(hub[0][1] == "HEAD" and "/resolve/main/config.json" in hub[0][2],
          "first request %s" % (hub[0][:3],))
    for _, method, path, _ in hub[1:]:
        check("/resolve/%s/" % commit in path, "%s not pinned" % path)
    check(any(p.endswith("/model.safetensors")
              for _, m, p, _ in c.state.requests("cdn", "GET")),
          "weights not fetched from the CDN")
    want = vit("classify", "--model", os.path.join(FIX, "vit_tiny"),
               "tests/fixtures/cli")
    got = vit("classify", "--model", d, "tests/fixtures/cli")
    check(got == want and "seven" in got, "classify: %r vs %r" % (got, want))


def test_clip_with_tokenizer(c):
    d = c.out("clip")
    rc, so, se = c.fetch("test/clip-tok", d)
    check_fetched(c, d, "test/clip-tok", VIT_FILES + [
        "merges.txt", "tokenizer_config.json", "vocab.json"], rc, so, se)
    args = ["--text", "a photo of a cat", "--text", "the number 7",
            "tests/fixtures/cli"]
    want = vit("match", "--model", os.path.join(FIX, "clip_tok"), *args)
    got = vit("match", "--model", d, *args)
    check(got == want, "match: %r vs %r" % (got, want))


def test_openclip(c):
    """open_clip's form: no config.json; its config, weights and the
    tokenizer files, nothing else (not the .bin beside them)."""
    d = c.out("openclip")
    rc, so, se = c.fetch("test/openclip", d)
    check_fetched(c, d, "test/openclip", OC_FILES, rc, so, se)
    args = ["--text", "a photo of a cat", "--text", "the number 7",
            "tests/fixtures/cli"]
    want = vit("match", "--model", os.path.join(FIX, "openclip_b32"), *args)
    got = vit("match", "--model", d, *args)
    check(got == want, "match: %r vs %r" % (got, want))


def test_openclip_bin_only(c):
    top = c.out("ocbin")
    d = os.path.join(top, "m")
    rc, so, se = c.fetch("test/openclip-bin", d)
    check(rc == 1, "rc %d" % rc)
    for word in ("only open_clip_pytorch_model.bin", "save_file",
                 "hf-hub:test/openclip-bin"):
        check(word in se, "stderr lacks %r: %r" % (word, se))
    check_nothing_left(d, top)


def test_sharded(c):
    d = c.out("sharded")
    rc, so, se = c.fetch("test/vit-sharded", d)
    names = sorted(c.state.repos["test/vit-sharded"].files)
    check(len([n for n in names if n.endswith(".safetensors")]) == 8,
          "fixture has not 8 shards")
    check_fetched(c, d, "test/vit-sharded", names, rc, so, se)
    want = vit("classify", "--model", os.path.join(FIX, "vit_sharded"),
               "tests/fixtures/cli")
    got = vit("classify", "--model", d, "tests/fixtures/cli")
    check(got == want, "classify: %r vs %r" % (got, want))


def test_default_dir_next_to_script(c):
    copy = os.path.join(c.tmp, "elsewhere", "models")
    os.makedirs(copy)
    shutil.copy(FETCH, os.path.join(copy, "fetch"))
    rc, so, se = c.fetch("test/vit-tiny", script=os.path.join(copy, "fetch"))
    d = os.path.join(copy, "test", "vit-tiny")
    check_fetched(c, d, "test/vit-tiny", VIT_FILES, rc, so, se)


def test_dropped_connection_retried(c):
    d = c.out("drop")
    c.state.drop_after["model.safetensors"] = 40000
    rc, so, se = c.fetch("test/vit-tiny", d)
    check_fetched(c, d, "test/vit-tiny", VIT_FILES, rc, so, se)
    check("retrying" in se, "no retry notice: %r" % se)
    gets = [h.get("range") for _, _, p, h in c.state.requests("cdn", "GET")]
    check(gets == [None, "bytes=40000-"], "CDN GETs' Range: %s" % gets)


def test_dropped_connection_resumed_next_run(c):
    d = c.out("resume")
    c.state.drop_after["model.safetensors"] = 40000
    rc, so, se = c.fetch("--retries", "0", "test/vit-tiny", d)
    check(rc == 1, "rc %d after a drop with no retries" % rc)
    check("resume" in se and "40000 of 101136" in se, "stderr %r" % se)
    check(not os.path.exists(d), "DIR made by a failed fetch")
    part = os.path.join(staging(d), "model.safetensors.part")
    check(os.path.getsize(part) == 40000, "no 40000-byte .part")
    c.state.reset()
    rc, so, se = c.fetch("test/vit-tiny", d)
    check_fetched(c, d, "test/vit-tiny", VIT_FILES, rc, so, se)
    gets = [h.get("range") for _, _, p, h in c.state.requests("cdn", "GET")]
    check(gets == ["bytes=40000-"], "resume Range: %s" % gets)
    # config.json and the preprocessor were verified in the first run and
    # are not asked for again.
    again = [p for _, m, p, _ in c.state.requests("hub", "GET")
             if p.endswith("/config.json")]
    check(again == [], "config.json fetched twice")


def test_server_ignoring_range(c):
    d = c.out("norange")
    c.state.drop_after["model.safetensors"] = 40000
    rc, so, se = c.fetch("--retries", "0", "test/vit-tiny", d)
    check(rc == 1, "rc %d" % rc)
    c.state.reset()
    c.state.ignore_range = True
    rc, so, se = c.fetch("test/vit-tiny", d)
    check_fetched(c, d, "test/vit-tiny", VIT_FILES, rc, so, se)
    gets = [h.get("range") for _, _, p, h in c.state.requests("cdn", "GET")]
    check(gets == ["bytes=40000-"], "Range asked: %s" % gets)
    got = vit("classify", "--model", d, "tests/fixtures/cli")
    check("seven" in got, "classify %r" % got)


def test_404_config(c):
    top = c.out("new404")
    d = os.path.join(top, "deeper", "m")
    rc, so, se = c.fetch("test/no-config", d)
    check(rc == 1, "rc %d" % rc)
    url = "%s/test/no-config/resolve/main/config.json" % c.hub_url
    for word in ("config.json", "404", url, "has no config.json"):
        check(word in se, "stderr lacks %r: %r" % (word, se))
    check(so == "", "stdout %r" % so)
    check_nothing_left(d, top)


def test_missing_repo(c):
    d = c.out("norepo")
    rc, so, se = c.fetch("test/not-there", d)
    check(rc == 1 and "401" in se and "no repository test/not-there" in se,
          "rc %d, %r" % (rc, se))
    check_nothing_left(d, d)


def test_wrong_sha256(c):
    top = c.out("newsha")
    d = os.path.join(top, "m")
    c.state.bad_etag.add("model.safetensors")
    rc, so, se = c.fetch("test/vit-tiny", d)
    check(rc == 1, "rc %d" % rc)
    check("sha256 mismatch" in se and "model.safetensors" in se,
          "stderr %r" % se)
    check_nothing_left(d, top)


def test_wrong_size(c):
    top = c.out("newsize")
    d = os.path.join(top, "m")
    c.state.bad_size.add("model.safetensors")
    rc, so, se = c.fetch("test/vit-tiny", d)
    check(rc == 1 and "X-Linked-Size" in se, "rc %d, %r" % (rc, se))
    check_nothing_left(d, top)


def test_token_to_hub_only(c):
    d = c.out("gated")
    rc, so, se = c.fetch("test/gated", d, token=TOKEN)
    check_fetched(c, d, "test/gated", VIT_FILES, rc, so, se)
    hub, cdn = c.state.requests("hub"), c.state.requests("cdn")
    check(hub and all(h.get("authorization") == "Bearer " + TOKEN
                      for _, _, _, h in hub), "hub request without token")
    check(cdn and all("authorization" not in h for _, _, _, h in cdn),
          "token sent to the CDN")


def test_token_file(c):
    home = os.path.join(c.tmp, "hf-home")
    os.makedirs(home)
    with open(os.path.join(home, "token"), "w") as f:
        f.write(TOKEN + "\n")
    d = c.out("gated-file")
    rc, so, se = c.fetch("test/gated", d, hf_home=home)
    check_fetched(c, d, "test/gated", VIT_FILES, rc, so, se)


def test_gated_without_token(c):
    d = c.out("gated-none")
    rc, so, se = c.fetch("test/gated", d)
    check(rc == 1, "rc %d" % rc)
    for word in ("401", "GatedRepo", "is gated", "HF_TOKEN"):
        check(word in se, "stderr lacks %r: %r" % (word, se))
    check_nothing_left(d, d)


def test_only_pytorch_bin(c):
    top = c.out("newbin")
    d = os.path.join(top, "m")
    rc, so, se = c.fetch("test/bin-only", d)
    check(rc == 1, "rc %d" % rc)
    for word in ("only pytorch_model.bin", "vit reads safetensors",
                 "--revision refs/pr/N", "ViTForImageClassification"
                 ".from_pretrained(\"test/bin-only\")"):
        check(word in se, "stderr lacks %r: %r" % (word, se))
    check(any(m == "HEAD" and p.endswith("/pytorch_model.bin")
              for _, m, p, _ in c.state.requests("hub")),
          "no HEAD for pytorch_model.bin")
    check(c.state.requests("cdn") == [], "a HEAD followed the hub's redirect")
    check(not any(m == "GET" and p.endswith(".bin")
                  for _, m, p, _ in c.state.log), "downloaded the .bin")
    check_nothing_left(d, top)


def test_timm_fetch_then_classify(c):
    d = c.out("timm")
    rc, so, se = c.fetch("test/timm-tiny", d)
    check_fetched(c, d, "test/timm-tiny", ["config.json",
                                           "model.safetensors"], rc, so, se)
    want = vit("classify", "--model", os.path.join(FIX, "timm", "timm_token"),
               "tests/fixtures/cli")
    got = vit("classify", "--model", d, "tests/fixtures/cli")
    check(got == want and "two (2)" in got, "classify: %r vs %r" % (got, want))


def test_timm_only_pytorch_bin(c):
    top = c.out("timmbin")
    d = os.path.join(top, "m")
    rc, so, se = c.fetch("test/timm-bin-only", d)
    check(rc == 1, "rc %d" % rc)
    for word in ("only pytorch_model.bin", "vit reads safetensors",
                 "timm.models.save_for_hf(timm.create_model("
                 "\"hf-hub:test/timm-bin-only\", pretrained=True)"):
        check(word in se, "stderr lacks %r: %r" % (word, se))
    check_nothing_left(d, top)


def test_revision_pr(c):
    d = c.out("pr")
    rc, so, se = c.fetch("--revision", "refs/pr/1", "test/bin-only", d)
    check(rc == 0, "rc %d: %s" % (rc, se))
    first = c.state.requests("hub")[0][2]
    check("/resolve/refs%2Fpr%2F1/config.json" in first, "url %s" % first)
    got = vit("classify", "--model", d, "tests/fixtures/cli")
    check("seven" in got, "classify %r" % got)
    rc, so, se = c.fetch("--revision", "v9", "test/bin-only", c.out("v9"))
    check(rc == 1 and "404" in se and "has no revision v9" in se,
          "unknown revision: rc %d, %r" % (rc, se))
    check_nothing_left(c.out("v9"), c.out("v9"))


def test_no_weights(c):
    top = c.out("newnow")
    d = os.path.join(top, "m")
    rc, so, se = c.fetch("test/config-only", d)
    check(rc == 1 and "no weights vit can read" in se, "rc %d, %r" % (rc, se))
    check_nothing_left(d, top)


def test_existing_dir(c):
    d = c.out("again")
    rc, so, se = c.fetch("test/vit-tiny", d)
    check(rc == 0, "first fetch rc %d" % rc)
    c.state.reset()
    rc, so, se = c.fetch("test/vit-tiny", d)
    check(rc == 0 and so.strip(), "second fetch rc %d, %r" % (rc, se))
    check(all(m == "HEAD" for _, m, _, _ in c.state.log),
          "up-to-date DIR downloaded again")
    # The hub out of reach (a port nothing listens on): DIR stays usable.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = "http://127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    rc, so, se = c.fetch("test/vit-tiny", d, endpoint=closed)
    check(rc == 0 and "cannot check" in se and so.strip(),
          "offline: rc %d, %r" % (rc, se))
    # The revision moved on: say so, touch nothing.
    repo = c.state.repos["test/vit-tiny"]
    old = repo.commit
    repo.commit = commit_of("moved")
    try:
        rc, so, se = c.fetch("test/vit-tiny", d)
    finally:
        repo.commit = old
    check(rc == 1 and "is now" in se, "moved: rc %d, %r" % (rc, se))
    check(sorted(os.listdir(d)) == sorted(VIT_FILES + [".fetch.json"]),
          "DIR changed")
    # Someone else's folder.
    mine = c.out("mine")
    os.makedirs(mine)
    with open(os.path.join(mine, "notes.txt"), "w") as f:
        f.write("keep me\n")
    rc, so, se = c.fetch("test/vit-tiny", mine)
    check(rc == 1 and "not a fetch of" in se, "foreign: rc %d, %r" % (rc, se))
    check(os.listdir(mine) == ["notes.txt"], "foreign DIR touched")
    # An empty folder is filled.
    empty = c.out("empty")
    os.makedirs(empty)
    rc, so, se = c.fetch("test/vit-tiny", empty)
    check_fetched(c, empty, "test/vit-tiny", VIT_FILES, rc, so, se)


def test_partial_of_old_commit_discarded(c):
    d = c.out("oldpart")
    c.state.drop_after["model.safetensors"] = 40000
    rc, so, se = c.fetch("--retries", "0", "test/vit-tiny", d)
    check(rc == 1, "rc %d" % rc)
    repo = c.state.repos["test/vit-tiny"]
    old = repo.commit
    repo.commit = commit_of("new commit")
    c.state.reset()
    try:
        rc, so, se = c.fetch("test/vit-tiny", d)
        check_fetched(c, d, "test/vit-tiny", VIT_FILES, rc, so, se)
    finally:
        repo.commit = old
    check("starting over" in se, "stderr %r" % se)
    gets = [h.get("range") for _, _, p, h in c.state.requests("cdn", "GET")]
    check(gets == [None], "resumed a part of another commit: %s" % gets)


def test_stall_times_out(c):
    d = c.out("stall")
    c.state.stall["model.safetensors"] = 1000
    t0 = time.monotonic()
    rc, so, se = c.fetch("--retries", "0", "--timeout", "1",
                         "test/vit-tiny", d)
    took = time.monotonic() - t0
    c.state.release.set()
    # The server holds the connection open for 30 s: only the client's
    # timeout ends it this soon, and says so.
    check(rc == 1 and "timed out" in se, "rc %d, %r" % (rc, se))
    check(took < 15, "took %.1f s" % took)
    part = os.path.join(staging(d), "model.safetensors.part")
    check(os.path.getsize(part) == 1000, "partial download not kept")
    shutil.rmtree(staging(d))


def test_interrupted(c):
    d = c.out("sigint")
    c.state.stall["model.safetensors"] = 1000
    part = os.path.join(staging(d), "model.safetensors.part")
    p = subprocess.Popen([sys.executable, FETCH, "test/vit-tiny", d],
                         cwd=c.tmp, env=c.env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not (os.path.exists(part) and os.path.getsize(part) == 1000):
            check(time.monotonic() < deadline and p.poll() is None,
                  "the download never started")
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        so, se = p.communicate(timeout=RUN_TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    check(p.returncode == 130 and "interrupted" in se and "resume" in se,
          "rc %d, %r" % (p.returncode, se))
    check(os.path.getsize(part) == 1000 and not os.path.exists(d),
          "partial download not kept as it was")


def test_locked_staging(c):
    d = c.out("locked")
    st = staging(d)
    os.makedirs(st)
    fd = os.open(st, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        rc, so, se = c.fetch("test/vit-tiny", d)
    finally:
        os.close(fd)
    check(rc == 1 and "another" in se, "rc %d, %r" % (rc, se))
    check(os.path.isdir(st) and not os.path.exists(d), "locked staging gone")


def test_progress_on_a_terminal(c):
    d = c.out("tty")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    p = subprocess.Popen([sys.executable, FETCH, "test/vit-tiny", d],
                         cwd=c.tmp, env=c.env(), stdout=subprocess.PIPE,
                         stderr=slave)
    os.close(slave)
    chunks = []

    def reader():
        while True:
            try:
                b = os.read(master, 4096)
            except OSError:
                break
            if not b:
                break
            chunks.append(b)
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    so, _ = p.communicate(timeout=RUN_TIMEOUT)
    t.join(5)
    os.close(master)
    err = b"".join(chunks).decode(errors="replace")
    check(p.returncode == 0, "rc %d: %r" % (p.returncode, err))
    for word in ("model.safetensors", "%", "ETA", "/s", "\r", "101.1 kB",
                 "test/vit-tiny at "):
        check(word in err, "progress lacks %r: %r" % (word, err))


TESTS = [v for k, v in list(globals().items()) if k.startswith("test_")]


def run_one(t, repos, top):
    """Runs one test in its own world; returns (name, error or None, s)."""
    name = t.__name__[5:]
    tmp = tempfile.mkdtemp(prefix=name + "-", dir=top)
    t1 = time.monotonic()
    c = Ctx(repos, tmp)
    try:
        t(c)
        err = None
    except AssertionError as e:
        err = str(e)
    except Exception:
        err = traceback.format_exc()
    finally:
        c.close()
    return name, err, time.monotonic() - t1


def main():
    t0 = time.monotonic()
    vit_tiny = files_of("vit_tiny")
    base = files_of("vit_tiny", VIT_FILES)
    extras = {"README.md": b"# a model card\n",
              "pytorch_model.bin": b"not fetched" * 100}
    repos = {
        # The reference outputs (ref_*.npy), a model card and a
        # pytorch_model.bin ride along to show that only what vit needs is
        # fetched.
        "test/vit-tiny": Repo(dict(vit_tiny, **extras)),
        "test/clip-tok": Repo(dict(files_of("clip_tok", VIT_FILES + [
            "vocab.json", "merges.txt", "tokenizer_config.json"]), **extras)),
        "test/openclip": Repo(dict(files_of("openclip_b32", OC_FILES),
                                   **{"open_clip_pytorch_model.bin":
                                      b"not fetched" * 100}, **extras)),
        "test/openclip-bin": Repo(
            {"open_clip_config.json":
             files_of("openclip_b32", OC_FILES)["open_clip_config.json"],
             "open_clip_pytorch_model.bin": b"\x80\x02pickle" * 50}),
        "test/vit-sharded": Repo({
            n: b for n, b in files_of("vit_sharded").items()
            if not n.startswith("ref_")}),
        "test/no-config": Repo({n: b for n, b in base.items()
                                if n != "config.json"}),
        "test/bin-only": Repo(
            {"config.json": base["config.json"],
             "preprocessor_config.json": base["preprocessor_config.json"],
             "pytorch_model.bin": b"\x80\x02pickle" * 50},
            refs={"refs/pr/1": dict(base)}),
        "test/config-only": Repo({"config.json": base["config.json"]}),
        # timm's layout: config.json and model.safetensors alone.
        "test/timm-tiny": Repo(dict(files_of(os.path.join(
            "timm", "timm_token"), ["config.json", "model.safetensors"]),
            **extras)),
        "test/timm-bin-only": Repo(dict(files_of(os.path.join(
            "timm", "bin_only")))),
        "test/gated": Repo(dict(base), gated=True),
    }
    top = tempfile.mkdtemp(prefix="vit-fetch-test-")
    jobs = int(os.environ.get("FETCH_TEST_JOBS", "6"))
    passed = failed = 0
    try:
        with concurrent.futures.ThreadPoolExecutor(max(jobs, 1)) as ex:
            results = ex.map(lambda t: run_one(t, repos, top), TESTS)
            for name, err, took in results:
                if err is None:
                    passed += 1
                    print("ok   %s (%.2f s)" % (name, took), flush=True)
                else:
                    failed += 1
                    print("FAIL %s: %s" % (name, err), flush=True)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    print("models/fetch tests took %.1f s" % (time.monotonic() - t0))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

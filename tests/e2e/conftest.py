"""Shared fixtures for Tern's integration tests.

Each test gets its own data directory and a `tern serve` started on ephemeral
loopback ports (port 0; the real port is read from the "listening" log line).
The binary is $TERN_BIN (default build/tern); run-all.sh runs the suite once
with the normal build and once with the ASan/UBSan build.
"""
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TERN = os.path.abspath(os.environ.get("TERN_BIN", os.path.join(ROOT, "build", "tern")))


class Tern:
    """A running `tern serve` with its own config and data directory."""

    def __init__(self, tmp_path, extra="", domains="example.org example.net",
                 users=(("alice@example.org", "alicepw"), ("bob@example.org", "bobpw")),
                 pop3=False, imap=False, submission=False):
        self.dir = str(tmp_path)
        self.data = os.path.join(self.dir, "var")
        self.conf = os.path.join(self.dir, "tern.conf")
        self.base_conf = (
            "hostname = mx.example.org\n"
            f"domains = {domains}\n"
            "data_dir = ./var\n"
            "smtp_listen = 127.0.0.1:0\n"
            "log_level = debug\n"
        )
        if pop3:
            # POP3 (issue 4) and POP3 over implicit TLS on ephemeral ports too
            self.base_conf += "pop3_listen = 127.0.0.1:0\npop3s_listen = 127.0.0.1:0\n"
        if imap:
            # IMAP (issue 5) and IMAP over implicit TLS on ephemeral ports too
            self.base_conf += "imap_listen = 127.0.0.1:0\nimaps_listen = 127.0.0.1:0\n"
        if submission:
            # submission (issue 6): 587-style STARTTLS and 465-style implicit TLS
            self.base_conf += ("submission_listen = 127.0.0.1:0\n"
                               "submissions_listen = 127.0.0.1:0\n")
        self.extra = extra
        self.write_conf(self.base_conf + extra)
        self.users = list(users)
        for addr, pw in users:
            self.cli("user", "add", addr, password=pw)
        self.proc = None
        self.lines = []
        self.ports = {}

    def write_conf(self, text):
        with open(self.conf, "w") as f:
            f.write(text)

    def cli(self, *args, password=None, check=True):
        cmd = [TERN, args[0], args[1], "-c", self.conf, *args[2:]]
        p = subprocess.run(cmd, input=(password + "\n") if password is not None else "",
                           capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"{cmd} failed ({p.returncode}): {p.stdout} {p.stderr}")
        return p

    def start(self, timeout=20):
        self.proc = subprocess.Popen([TERN, "serve", "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     errors="replace")
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_log(r"tern started", timeout)
        for line in list(self.lines):
            m = re.search(r"listening (\w+) (\S+):(\d+)$", line)
            if m:
                self.ports.setdefault(m.group(1), int(m.group(3)))
        return self

    def _read(self):
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_log(self, pattern, timeout=10, start=0):
        """Wait for a log line matching pattern; returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no log line matching {pattern!r}; log:\n" +
                                         "\n".join(self.lines[-40:]))
                self._cond.wait(min(left, 0.2))

    def log_text(self):
        with self._cond:
            return "\n".join(self.lines)

    @property
    def smtp_port(self):
        return self.ports["smtp"]

    @property
    def pop3_port(self):
        return self.ports["pop3"]

    @property
    def pop3s_port(self):
        return self.ports["pop3s"]

    @property
    def imap_port(self):
        return self.ports["imap"]

    @property
    def imaps_port(self):
        return self.ports["imaps"]

    @property
    def submission_port(self):
        return self.ports["submission"]

    @property
    def submissions_port(self):
        return self.ports["submissions"]

    def connect(self, port=None, timeout=10):
        return socket.create_connection(("127.0.0.1", port or self.smtp_port), timeout=timeout)

    def maildir(self, addr):
        local, domain = addr.lower().rsplit("@", 1)
        return os.path.join(self.data, "mail", domain, local)

    def messages(self, addr, sub="new"):
        d = os.path.join(self.maildir(addr), sub)
        if not os.path.isdir(d):
            return []
        return sorted(os.path.join(d, f) for f in os.listdir(d))

    def read_messages(self, addr):
        out = []
        for p in self.messages(addr):
            with open(p, "rb") as f:
                out.append(f.read())
        return out

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError("tern did not stop within %ss after SIGTERM" % timeout)
        if self.proc:
            self._reader.join(5)
            # ASan/UBSan findings must fail the test that caused them
            text = self.log_text()
            assert "ERROR: AddressSanitizer" not in text, text[-4000:]
            assert "runtime error:" not in text, text[-4000:]
            assert "ERROR: LeakSanitizer" not in text, text[-4000:]
        return self.proc.returncode if self.proc else None


@pytest.fixture
def tern(tmp_path):
    t = Tern(tmp_path)
    t.start()
    yield t
    t.stop()


@pytest.fixture
def make_tern(tmp_path):
    """Factory for tests that need their own configuration."""
    made = []

    def make(extra="", start=True, **kw):
        t = Tern(tmp_path / f"t{len(made)}", extra=extra, **kw) if made else Tern(tmp_path, extra=extra, **kw)
        made.append(t)
        if start:
            t.start()
        return t

    yield make
    for t in made:
        if t.proc and t.proc.poll() is None:
            t.stop()


class Lines:
    """Raw line client: send bytes, read CRLF lines; SMTP replies (multi-line
    aware) with reply()/cmd(). test_pop3.P3 builds on it."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def rawline(self, timeout=10):
        """The next line as bytes, without its CRLF."""
        self.sock.settimeout(timeout)
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; pending: %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def line(self, timeout=10):
        return self.rawline(timeout).decode("utf-8", "replace")

    def reply(self, timeout=10):
        """One full reply: returns (code, [lines])."""
        lines = []
        while True:
            l = self.line(timeout)
            lines.append(l)
            if len(l) < 4 or l[3] != "-":
                return int(l[:3]), lines

    def cmd(self, text, timeout=10):
        self.send(text + "\r\n")
        return self.reply(timeout)

    def closed(self, timeout=5):
        """True if the peer closes the connection (after any buffered data)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


@pytest.fixture
def lines_client():
    made = []

    def make(tern_obj, greet=True):
        c = Lines(tern_obj.connect())
        made.append(c)
        if greet:
            code, l = c.reply()
            assert code == 220, l
        return c

    yield make
    for c in made:
        try:
            c.sock.close()
        except OSError:
            pass


def pytest_configure(config):
    # Tests whose time is mostly spent waiting out timeouts (stop deadlines,
    # busy timeouts, retry and lifetime clocks): tests/run-all.sh runs them
    # with the normal build only, and everything else under ASan/UBSan too.
    config.addinivalue_line("markers", "slow: dominated by waiting; skipped in the sanitizer pass")

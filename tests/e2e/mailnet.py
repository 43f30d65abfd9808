"""A loopback test network for Tern's outbound mail: a DNS server and SMTP sinks.

Everything here is Python 3 standard library only and runs in threads inside
the test process, on loopback addresses:

- DnsServer: an authoritative-looking DNS server on 127.0.0.1:<ephemeral>,
  UDP and TCP, RFC 1035 wire format written by hand (section 4.1: header,
  question, resource records; 4.1.4 name compression in answers; 4.2.2 the
  two-byte length prefix over TCP). The zone is a dict that tests may change
  at any time; every query is counted per (name, type).
- Sink: an SMTP server (RFC 5321) on 127.0.0.X:25 (where Tern delivers MX
  mail) or on an ephemeral port (a smarthost). Its EHLO capabilities and its
  replies to each command are scriptable; it records every connection and
  transaction (peer, HELO, TLS, AUTH, envelope with parameters, data).
- Mailnet: one DnsServer plus any number of sinks, with helpers that publish
  MX/A records for sinks; close() stops everything.

Every wait is bounded (wait_for(n, timeout) and friends raise AssertionError
with what was seen), and every socket has a timeout, so a broken server under
test makes a test fail, never hang.
"""
import base64
import binascii
import errno
import ipaddress
import os
import random
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

# ---------------------------------------------------------------------------
# DNS (RFC 1035)
# ---------------------------------------------------------------------------

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
         "SRV": 33, "OPT": 41, "ANY": 255}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5}
CLASS_IN = 1
DEFAULT_TTL = 300


def norm_name(name):
    """Zone key form of a domain name: lowercase, no trailing dot ("" = root)."""
    return name.strip().rstrip(".").lower()


def type_name(qtype):
    return TYPE_NAMES.get(qtype, "TYPE%d" % qtype)


class DnsFormatError(Exception):
    pass


def read_name(msg, off, limit=255):
    """Decodes a (possibly compressed) domain name at off. Returns (labels as
    bytes, offset after the name in the original position)."""
    labels = []
    end = None
    hops = 0
    total = 0
    while True:
        if off >= len(msg):
            raise DnsFormatError("name runs past the message")
        n = msg[off]
        if n & 0xC0 == 0xC0:  # 4.1.4 pointer
            if off + 1 >= len(msg):
                raise DnsFormatError("truncated pointer")
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            hops += 1
            if hops > 64:
                raise DnsFormatError("pointer loop")
            continue
        if n & 0xC0:
            raise DnsFormatError("reserved label type")
        off += 1
        if n == 0:
            break
        if off + n > len(msg):
            raise DnsFormatError("label runs past the message")
        labels.append(bytes(msg[off:off + n]))
        total += n + 1
        if total > limit:
            raise DnsFormatError("name too long")
        off += n
    return labels, (end if end is not None else off)


class _Writer:
    """Builds a DNS message, compressing names (RFC 1035 4.1.4)."""

    def __init__(self):
        self.buf = bytearray()
        self.names = {}  # lowercase label tuple -> offset of its first occurrence

    def name(self, name):
        labels = [l for l in name.rstrip(".").split(".")] if name.strip(".") else []
        for i in range(len(labels)):
            key = tuple(l.lower() for l in labels[i:])
            if key in self.names:
                self.buf += struct.pack("!H", 0xC000 | self.names[key])
                return
            if len(self.buf) < 0x3FFF:
                self.names[key] = len(self.buf)
            raw = labels[i].encode("utf-8")
            if not 0 < len(raw) < 64:
                raise ValueError("bad label in %r" % name)
            self.buf += bytes([len(raw)]) + raw
        self.buf += b"\0"

    def rr(self, owner, rtype, ttl, rdata_fn):
        self.name(owner)
        self.buf += struct.pack("!HHI", rtype, CLASS_IN, ttl)
        at = len(self.buf)
        self.buf += b"\0\0"
        rdata_fn(self)
        struct.pack_into("!H", self.buf, at, len(self.buf) - at - 2)


class DnsServer:
    """DNS server for tests. zone maps a name (any case, trailing dot optional)
    to either a string for the whole name or a dict of records:

        {"mx.test": {"A": ["127.0.0.2"], "AAAA": ["::1"], "ttl": 60},
         "dom.test": {"MX": [(10, "mx.test"), (20, "mx2.test")]},
         "nullmx.test": {"MX": [(0, ".")]},          # RFC 7505 null MX
         "alias.test": {"CNAME": "mx.test"},
         "flaky.test": {"MX": "SERVFAIL", "A": [...]}, # per type: an rcode or "DROP"
         "gone.test": "NXDOMAIN", "broken.test": "SERVFAIL", "slow.test": "DROP"}

    A name that is absent is NXDOMAIN, unless it is a parent of a listed name
    (then NOERROR with no data). A listed name without records of the asked
    type is NOERROR with no data. "DROP" never answers (a resolver timeout).
    A dict may carry "ttl" (for all of its records) and "delay" (seconds
    before answering). CNAMEs are followed inside the zone (RFC 1034 3.6.2).
    Queries are counted: count("dom.test", "MX")."""

    def __init__(self, zone=None, host="127.0.0.1", port=0):
        self.lock = threading.Lock()
        self.zone = {}
        self.counts = {}
        self.log = []  # (transport, name, type name) in arrival order
        self.errors = []  # malformed queries seen (should stay empty)
        self._stop = threading.Event()
        # UDP and TCP on the same port number: an ephemeral UDP port may be
        # taken for TCP (by any outgoing connection), so try again then
        for attempt in range(100):
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind((host, port))
            self.host, self.port = self.udp.getsockname()
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind((self.host, self.port))
                break
            except OSError as e:
                self.udp.close()
                self.tcp.close()
                if e.errno != errno.EADDRINUSE or port != 0 or attempt == 99:
                    raise
        self.tcp.listen(16)
        self.udp.settimeout(0.2)
        self.tcp.settimeout(0.2)
        if zone:
            self.update(zone)
        self._threads = [threading.Thread(target=self._serve_udp, daemon=True, name="dns-udp"),
                         threading.Thread(target=self._serve_tcp, daemon=True, name="dns-tcp")]
        for t in self._threads:
            t.start()

    @property
    def address(self):
        """For Tern's dns_servers key."""
        return "%s:%d" % (self.host, self.port)

    # -- zone --
    def set(self, name, records):
        """Replaces one name's entry (a dict of records or an rcode string)."""
        with self.lock:
            self.zone[norm_name(name)] = records

    def update(self, zone):
        with self.lock:
            for k, v in zone.items():
                self.zone[norm_name(k)] = v

    def remove(self, name):
        with self.lock:
            self.zone.pop(norm_name(name), None)

    # -- counters --
    def count(self, name, qtype=None):
        """Queries seen for name (of one type, or all types)."""
        n = norm_name(name)
        with self.lock:
            return sum(c for (k, t), c in self.counts.items()
                       if k == n and (qtype is None or t == qtype))

    def reset_counts(self):
        with self.lock:
            self.counts.clear()
            self.log.clear()

    # -- serving --
    def _serve_udp(self):
        while not self._stop.is_set():
            try:
                data, peer = self.udp.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self._answer(data, "udp", lambda out, p=peer: self._send_udp(out, p))

    def _send_udp(self, out, peer):
        try:
            self.udp.sendto(out, peer)
        except OSError:
            pass

    def _serve_tcp(self):
        while not self._stop.is_set():
            try:
                c, _ = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._tcp_conn, args=(c,), daemon=True).start()

    def _tcp_conn(self, c):
        c.settimeout(10)
        lock = threading.Lock()

        def send(out):
            with lock:
                try:
                    c.sendall(struct.pack("!H", len(out)) + out)
                except OSError:
                    pass

        try:
            while not self._stop.is_set():
                hdr = _recv_exact(c, 2)
                if hdr is None:
                    break
                (n,) = struct.unpack("!H", hdr)
                data = _recv_exact(c, n)
                if data is None:
                    break
                self._answer(data, "tcp", send)
        except OSError:
            pass
        finally:
            c.close()

    def _answer(self, data, transport, send):
        try:
            out, delay = self.respond(data, transport)
        except DnsFormatError as e:
            with self.lock:
                self.errors.append("%s: %s" % (e, binascii.hexlify(data[:64]).decode()))
            if len(data) >= 2:
                # FORMERR with the query's ID (RFC 1035 4.1.1)
                send(data[:2] + struct.pack("!HHHHH", 0x8001, 0, 0, 0, 0))
            return
        if out is None:
            return  # DROP: the resolver times out
        if delay:
            threading.Timer(delay, send, args=(out,)).start()
        else:
            send(out)

    def respond(self, data, transport="udp"):
        """The reply to one query message: (bytes or None for DROP, delay)."""
        if len(data) < 12:
            raise DnsFormatError("short header")
        qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", data[:12])
        if flags & 0x8000:
            raise DnsFormatError("a response, not a query")
        if qd != 1:
            raise DnsFormatError("QDCOUNT %d" % qd)
        labels, off = read_name(data, 12)
        if off + 4 > len(data):
            raise DnsFormatError("truncated question")
        qtype, qclass = struct.unpack("!HH", data[off:off + 4])
        qname_raw = ".".join(l.decode("latin-1") for l in labels)
        qname = qname_raw.lower()
        tname = type_name(qtype)
        with self.lock:
            self.counts[(qname, tname)] = self.counts.get((qname, tname), 0) + 1
            self.log.append((transport, qname, tname))
            answers, rcode, delay, drop = self._lookup(qname, tname)
        if drop:
            return None, 0
        opcode = (flags >> 11) & 0xF
        rd = flags & 0x0100
        rflags = 0x8000 | (opcode << 11) | 0x0400 | rd | 0x0080 | RCODES[rcode]
        w = _Writer()
        w.buf += struct.pack("!HHHHHH", qid, rflags, 1, len(answers), 0, 0)
        w.name(qname_raw)
        w.buf += struct.pack("!HH", qtype, qclass)
        for owner, rtype, ttl, value in answers:
            w.rr(owner, TYPES[rtype], ttl, _rdata(rtype, value))
        return bytes(w.buf), delay

    def _lookup(self, qname, tname):
        """(answers [(owner, type, ttl, value)], rcode name, delay, drop)."""
        answers = []
        name = qname
        delay = 0
        for _ in range(8):  # CNAME chain limit
            entry = self.zone.get(name)
            if entry is None:
                if answers:
                    return answers, "NOERROR", delay, False  # dangling CNAME target
                parent = any(k.endswith("." + name) for k in self.zone) or name == ""
                return answers, "NOERROR" if parent else "NXDOMAIN", delay, False
            if isinstance(entry, str):
                if entry == "DROP":
                    return [], "NOERROR", 0, True
                return answers, entry, delay, False
            delay = max(delay, float(entry.get("delay", 0)))
            ttl = int(entry.get("ttl", DEFAULT_TTL))
            recs = entry.get(tname)
            if isinstance(recs, str):
                if recs == "DROP":
                    return [], "NOERROR", 0, True
                return answers, recs, delay, False
            if recs is None and "CNAME" in entry and tname != "CNAME":
                answers.append((name, "CNAME", ttl, entry["CNAME"]))
                name = norm_name(entry["CNAME"])
                continue
            if recs is None:
                return answers, "NOERROR", delay, False  # no data
            if tname == "CNAME":
                recs = [recs] if isinstance(recs, str) else recs
            for r in recs:
                answers.append((name, tname, ttl, r))
            return answers, "NOERROR", delay, False
        return answers, "SERVFAIL", delay, False

    def close(self):
        self._stop.set()
        for s in (self.udp, self.tcp):
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(2)


def _rdata(rtype, value):
    def a(w):
        w.buf += socket.inet_pton(socket.AF_INET, value)

    def aaaa(w):
        w.buf += socket.inet_pton(socket.AF_INET6, value)

    def mx(w):
        pref, host = value
        w.buf += struct.pack("!H", pref)
        w.name(host)  # "." = the root: RFC 7505 null MX

    def name(w):
        w.name(value)

    def txt(w):
        raw = value.encode() if isinstance(value, str) else value
        for i in range(0, max(len(raw), 1), 255):
            part = raw[i:i + 255]
            w.buf += bytes([len(part)]) + part

    return {"A": a, "AAAA": aaaa, "MX": mx, "CNAME": name, "NS": name, "PTR": name,
            "TXT": txt}[rtype]


def _recv_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            return None
        out += chunk
    return out


# ---------------------------------------------------------------------------
# TLS material for sinks
# ---------------------------------------------------------------------------

_cert_lock = threading.Lock()
_cert_paths = None


def self_signed_cert():
    """(certfile, keyfile) of a self-signed P-256 certificate for "sink.test",
    made once per process with the openssl command-line tool."""
    global _cert_paths
    with _cert_lock:
        if _cert_paths is None:
            d = tempfile.mkdtemp(prefix="mailnet-cert-")
            crt, key = os.path.join(d, "sink.crt"), os.path.join(d, "sink.key")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
                            "-days", "2", "-subj", "/CN=sink.test",
                            "-addext", "subjectAltName=DNS:sink.test"],
                           check=True, capture_output=True, timeout=60)
            _cert_paths = (crt, key)
        return _cert_paths


def server_tls_context():
    crt, key = self_signed_cert()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    return ctx


# ---------------------------------------------------------------------------
# SMTP sink (RFC 5321)
# ---------------------------------------------------------------------------

DEFAULT_CAPS = ("PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 52428800", "DSN",
                "ENHANCEDSTATUSCODES", "STARTTLS")
MAX_LINE = 4096
MAX_DATA = 64 * 1024 * 1024


class Txn:
    """One mail transaction as the sink saw it."""

    def __init__(self, conn):
        self.conn = conn
        self.peer = conn.peer
        self.helo = conn.helo
        self.tls = conn.tls
        self.auth = conn.auth
        self.mail_from = None  # reverse-path without <>, "" for the null sender
        self.mail_params = {}  # upper-case keyword -> value (None without "=")
        self.rcpts = []  # [(addr, params)] that got 2xx
        self.rejected = []  # [(addr, code)] that did not
        self.data = b""  # content as received, dot-unstuffed, CRLF line ends
        self.via = None  # "DATA" or "BDAT"
        self.reply = None  # code of the final reply (None: never answered)
        self.accepted = False  # final reply was 2xx
        self.time = time.monotonic()

    @property
    def rcpt_addrs(self):
        return [a for a, _ in self.rcpts]

    def __repr__(self):
        return ("<Txn from=%r rcpts=%r rejected=%r %d bytes reply=%r tls=%r>" %
                (self.mail_from, self.rcpt_addrs, self.rejected, len(self.data), self.reply,
                 self.tls))


class Conn:
    """One SMTP connection to a sink."""

    def __init__(self, sink, sock, peer, n):
        self.sink = sink
        self.sock = sock
        self.peer = peer
        self.n = n
        self.helo = None
        self.ehlo = False
        self.tls = False
        self.tls_version = None
        self.auth = None  # authenticated user name
        self.commands = []  # every command line, decoded
        self.replies = []  # (verb, code) of every reply sent, in order; "CONNECT"
        # for the greeting, "EOM" after message content
        self.txns = []
        self.closed = False
        self.opened_at = time.monotonic()
        self.closed_at = None
        self.injected = False  # data pipelined after STARTTLS (RFC 3207 5 violation)
        self.pipelined = []  # commands that arrived with more input already behind them
        self.buf = b""

    def __repr__(self):
        return "<Conn %d from %s helo=%r tls=%r auth=%r txns=%d>" % (
            self.n, self.peer, self.helo, self.tls, self.auth, len(self.txns))


class _Rule:
    def __init__(self, verb, reply, times, match):
        self.verb = verb
        self.reply = reply
        self.times = times
        self.match = match.lower() if isinstance(match, str) else match
        self.used = 0


class _Close(Exception):
    pass


class Sink:
    """An SMTP server thread for tests.

    host/port: where to listen (port 0 = ephemeral). caps: EHLO keywords
    offered (STARTTLS only before TLS; AUTH is added when `auth` is given,
    after STARTTLS only if auth_needs_tls). auth: {user: password} accepted
    for AUTH PLAIN and LOGIN; require_auth makes MAIL answer 530 until then.

    Scripting: on(verb, reply, times=None, match=None) adds a rule; for each
    command the first rule with that verb whose match (a substring of the
    command's argument, case-insensitive, or a callable(arg)) fits and whose
    `times` is not used up gives the reply instead of the default. Verbs:
    CONNECT (greeting), EHLO, HELO, STARTTLS, AUTH, MAIL, RCPT, DATA (the
    reply to DATA itself), BDAT, EOM (the reply after the message content,
    for DATA and for BDAT ... LAST), RSET, NOOP, QUIT. A reply is "250 ..."
    text (several lines joined by "\\n"), "close" (drop the connection without
    a reply), "hang" (answer nothing more; hold the connection until the
    client closes it or the sink stops), or a callable(conn, arg) returning
    one of those or None (then the default).
    """

    def __init__(self, host="127.0.0.1", port=0, name="sink.test", caps=DEFAULT_CAPS,
                 auth=None, auth_needs_tls=True, require_auth=False, timeout=60):
        self.name = name
        self.caps = list(caps)
        self.auth_users = dict(auth) if auth else None
        self.auth_needs_tls = auth_needs_tls
        self.require_auth = require_auth
        self.timeout = timeout
        self.rules = []
        self.cond = threading.Condition()
        self.conns = []
        self.txns = []  # every transaction that reached MAIL, accepted or not
        self.errors = []  # exceptions in session threads (should stay empty)
        self._stop = threading.Event()
        self._tls_ctx = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.host, self.port = self.sock.getsockname()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name="sink-%s:%d" % (self.host, self.port))
        self._thread.start()

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    # -- scripting --
    def on(self, verb, reply, times=None, match=None):
        with self.cond:
            self.rules.append(_Rule(verb.upper(), reply, times, match))
        return self

    def clear_rules(self):
        with self.cond:
            self.rules.clear()

    def _rule_reply(self, conn, verb, arg):
        with self.cond:
            for r in self.rules:
                if r.verb != verb or (r.times is not None and r.used >= r.times):
                    continue
                if r.match is not None:
                    if callable(r.match):
                        if not r.match(arg):
                            continue
                    elif r.match not in arg.lower():
                        continue
                r.used += 1
                reply = r.reply
                break
            else:
                return None
        if callable(reply):
            reply = reply(conn, arg)
        return reply

    # -- records --
    @property
    def messages(self):
        """Accepted transactions, in order."""
        with self.cond:
            return [t for t in self.txns if t.accepted]

    def wait(self, pred, timeout=10, what="condition"):
        """Waits until pred() (called under the sink's lock) is true."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred()
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("sink %s: timed out after %ss waiting for %s; conns=%r "
                                         "txns=%r errors=%r" % (self.address, timeout, what,
                                                                self.conns, self.txns,
                                                                self.errors))
                self.cond.wait(min(left, 0.2))

    def wait_for(self, n, timeout=10):
        """Waits until at least n transactions were accepted; returns them all."""
        self.wait(lambda: sum(1 for t in self.txns if t.accepted) >= n, timeout,
                  "%d accepted messages" % n)
        return self.messages

    def wait_txns(self, n, timeout=10):
        """Waits until at least n transactions reached MAIL (accepted or not)."""
        self.wait(lambda: len(self.txns) >= n, timeout, "%d transactions" % n)
        with self.cond:
            return list(self.txns)

    def wait_conns(self, n, timeout=10):
        self.wait(lambda: len(self.conns) >= n, timeout, "%d connections" % n)
        with self.cond:
            return list(self.conns)

    def wait_data(self, n=1, timeout=10):
        """Waits until n transactions have their content complete (EOM seen,
        replied or not: a "hang" on EOM holds a complete message)."""
        self.wait(lambda: sum(1 for t in self.txns if t.via) >= n, timeout,
                  "%d complete message contents" % n)
        with self.cond:
            return [t for t in self.txns if t.via]

    def peak_conns(self):
        """Most connections that were open at the same time."""
        with self.cond:
            ev = sorted([(c.opened_at, 1) for c in self.conns] +
                        [(c.closed_at, -1) for c in self.conns if c.closed_at is not None])
        peak = cur = 0
        for _, d in ev:
            cur += d
            peak = max(peak, cur)
        return peak

    def wait_closed(self, timeout=10, n=1):
        """Waits until at least n connections came and every one so far was closed."""
        self.wait(lambda: len(self.conns) >= n and all(c.closed for c in self.conns), timeout,
                  "%d+ connections, all closed" % n)

    # -- server --
    def _accept_loop(self):
        n = 0
        while not self._stop.is_set():
            try:
                s, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            n += 1
            conn = Conn(self, s, peer, n)
            with self.cond:
                self.conns.append(conn)
                self.cond.notify_all()
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        try:
            conn.sock.settimeout(self.timeout)
            self._run(conn)
        except (_Close, OSError, ssl.SSLError, EOFError):
            pass
        except Exception as e:  # a bug in the sink itself: make it visible
            with self.cond:
                self.errors.append(repr(e))
        finally:
            try:
                conn.sock.close()
            except OSError:
                pass
            with self.cond:
                conn.closed = True
                conn.closed_at = time.monotonic()
                self.cond.notify_all()

    def _send(self, conn, text):
        conn.sock.sendall(text.replace("\n", "\r\n").encode() + b"\r\n")

    def _reply(self, conn, verb, arg, default):
        """Sends the scripted reply or default; returns the code sent."""
        r = self._rule_reply(conn, verb, arg)
        if r is None:
            r = default
        if r == "close":
            raise _Close()
        if r == "hang":
            self._hang(conn)
            raise _Close()
        lines = r.split("\n")
        out = []
        for i, l in enumerate(lines):
            code = l[:3]
            rest = l[4:] if len(l) > 3 else ""
            out.append(code + ("-" if i < len(lines) - 1 else " ") + rest)
        self._send(conn, "\n".join(out))
        code = int(lines[-1][:3])
        with self.cond:
            conn.replies.append((verb, code))
        return code

    def _hang(self, conn):
        """Answer nothing more: wait for the client to close, or the sink to stop."""
        conn.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                if not conn.sock.recv(65536):
                    return
            except socket.timeout:
                continue

    def _line(self, conn):
        while b"\r\n" not in conn.buf:
            if len(conn.buf) > MAX_LINE:
                raise _Close()
            chunk = conn.sock.recv(65536)
            if not chunk:
                raise EOFError()
            conn.buf += chunk
        line, conn.buf = conn.buf.split(b"\r\n", 1)
        return line

    def _exact(self, conn, n):
        while len(conn.buf) < n:
            chunk = conn.sock.recv(min(65536, n - len(conn.buf) + 65536))
            if not chunk:
                raise EOFError()
            conn.buf += chunk
        out, conn.buf = conn.buf[:n], conn.buf[n:]
        return out

    def ehlo_lines(self, conn):
        caps = []
        for c in self.caps:
            if c.upper() == "STARTTLS" and conn.tls:
                continue
            caps.append(c)
        if self.auth_users is not None and conn.auth is None and (conn.tls or
                                                                  not self.auth_needs_tls):
            caps.append("AUTH PLAIN LOGIN")
        return ["250 %s greets %s" % (self.name, conn.helo)] + ["250 " + c for c in caps]

    def offers(self, conn, kw):
        return any(c.split()[0].upper() == kw for c in self.caps) and not (
            kw == "STARTTLS" and conn.tls)

    def _run(self, conn):
        self._reply(conn, "CONNECT", "", "220 %s ESMTP mailnet sink" % self.name)
        txn = None
        while True:
            raw = self._line(conn)
            text = raw.decode("utf-8", "replace")
            with self.cond:
                conn.commands.append(text)
                if conn.buf:  # the client did not wait for this reply (RFC 2920)
                    conn.pipelined.append(text)
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            if verb in ("EHLO", "HELO"):
                conn.helo = arg.strip()
                conn.ehlo = verb == "EHLO"
                txn = None
                if verb == "EHLO":
                    self._reply(conn, verb, arg, "\n".join(self.ehlo_lines(conn)))
                else:
                    self._reply(conn, verb, arg, "250 %s" % self.name)
            elif verb == "STARTTLS":
                if not self.offers(conn, "STARTTLS") or not conn.ehlo:
                    self._reply(conn, verb, arg, "503 5.5.1 STARTTLS not offered")
                    continue
                code = self._reply(conn, verb, arg, "220 2.0.0 go ahead")
                if code != 220:
                    continue
                if conn.buf:
                    conn.injected = True  # RFC 3207 5: plaintext after STARTTLS is dropped
                    conn.buf = b""
                if self._tls_ctx is None:
                    self._tls_ctx = server_tls_context()
                conn.sock = self._tls_ctx.wrap_socket(conn.sock, server_side=True)
                conn.tls = True
                conn.tls_version = conn.sock.version()
                conn.helo = None  # RFC 3207 4.2: the client starts over with EHLO
                conn.ehlo = False
                txn = None
            elif verb == "AUTH":
                self._auth(conn, arg)
            elif verb == "MAIL":
                if txn is not None:
                    self._reply(conn, verb, arg, "503 5.5.1 nested MAIL")
                    continue
                if conn.helo is None:
                    self._reply(conn, verb, arg, "503 5.5.1 EHLO first")
                    continue
                if self.require_auth and conn.auth is None:
                    self._reply(conn, verb, arg, "530 5.7.0 authentication required")
                    continue
                addr, params = _path_args(arg, "FROM:")
                if addr is None:
                    self._reply(conn, verb, arg, "501 5.5.4 syntax: MAIL FROM:<address>")
                    continue
                t = Txn(conn)
                t.mail_from, t.mail_params = addr, params
                code = self._reply(conn, verb, addr, "250 2.1.0 ok")
                if code < 300:
                    txn = t
                    with self.cond:
                        conn.txns.append(t)
                        self.txns.append(t)
                        self.cond.notify_all()
            elif verb == "RCPT":
                if txn is None:
                    self._reply(conn, verb, arg, "503 5.5.1 MAIL first")
                    continue
                addr, params = _path_args(arg, "TO:")
                if addr is None:
                    self._reply(conn, verb, arg, "501 5.5.4 syntax: RCPT TO:<address>")
                    continue
                code = self._reply(conn, verb, addr, "250 2.1.5 ok")
                with self.cond:
                    if code < 300:
                        txn.rcpts.append((addr, params))
                    else:
                        txn.rejected.append((addr, code))
                    self.cond.notify_all()
            elif verb == "DATA":
                if txn is None or not txn.rcpts:
                    self._reply(conn, verb, arg, "554 5.5.1 no valid recipients" if txn
                                else "503 5.5.1 MAIL first")
                    continue
                code = self._reply(conn, verb, arg, "354 end with <CRLF>.<CRLF>")
                if code != 354:
                    continue
                data = self._read_data(conn)
                self._finish(conn, txn, data, "DATA")
                txn = None
            elif verb == "BDAT":
                if not self.offers(conn, "CHUNKING"):
                    self._reply(conn, verb, arg, "502 5.5.1 CHUNKING not offered")
                    continue
                parts = arg.split()
                try:
                    size = int(parts[0])
                except (ValueError, IndexError):
                    self._reply(conn, verb, arg, "501 5.5.4 syntax: BDAT size [LAST]")
                    continue
                chunk = self._exact(conn, size)
                if txn is None or not txn.rcpts:
                    self._reply(conn, verb, arg, "503 5.5.1 no transaction")
                    continue
                txn.data += chunk
                if len(txn.data) > MAX_DATA:
                    raise _Close()
                if len(parts) > 1 and parts[1].upper() == "LAST":
                    data, txn.data = txn.data, b""
                    self._finish(conn, txn, data, "BDAT")
                    txn = None
                else:
                    self._reply(conn, verb, arg, "250 2.0.0 %d octets" % size)
            elif verb == "RSET":
                txn = None
                self._reply(conn, verb, arg, "250 2.0.0 ok")
            elif verb == "NOOP":
                self._reply(conn, verb, arg, "250 2.0.0 ok")
            elif verb == "QUIT":
                self._reply(conn, verb, arg, "221 2.0.0 bye")
                raise _Close()
            elif verb == "VRFY":
                self._reply(conn, verb, arg, "252 2.1.5 cannot verify")
            else:
                self._reply(conn, verb, arg, "500 5.5.2 unknown command")

    def _read_data(self, conn):
        """Content after 354 up to the lone dot, dot-unstuffed (RFC 5321 4.5.2)."""
        out = bytearray()
        while True:
            while b"\r\n" not in conn.buf:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    raise EOFError()
                conn.buf += chunk
                if len(conn.buf) > MAX_DATA:
                    raise _Close()
            line, conn.buf = conn.buf.split(b"\r\n", 1)
            if line == b".":
                return bytes(out)
            if line.startswith(b"."):
                line = line[1:]
            out += line + b"\r\n"
            if len(out) > MAX_DATA:
                raise _Close()

    def _finish(self, conn, txn, data, via):
        with self.cond:
            txn.data = data
            txn.via = via
            self.cond.notify_all()
        code = self._reply(conn, "EOM", data.decode("utf-8", "replace"),
                           "250 2.0.0 ok: queued as %s-%d" % (self.name, len(self.txns)))
        with self.cond:
            txn.reply = code
            txn.accepted = 200 <= code < 300
            self.cond.notify_all()

    def _auth(self, conn, arg):
        parts = arg.split()
        offered = self.auth_users is not None and (conn.tls or not self.auth_needs_tls)
        if not offered or not parts:
            self._reply(conn, "AUTH", arg, "503 5.5.1 AUTH not offered")
            return
        if conn.auth is not None:
            self._reply(conn, "AUTH", arg, "503 5.5.1 already authenticated")
            return
        mech = parts[0].upper()
        try:
            if mech == "PLAIN":
                if len(parts) > 1:
                    resp = parts[1]
                else:
                    self._send(conn, "334 ")
                    resp = self._line(conn).decode()
                raw = base64.b64decode(resp, validate=True)
                _authz, user, pw = raw.decode().split("\0")
            elif mech == "LOGIN":
                if len(parts) > 1:
                    user = base64.b64decode(parts[1], validate=True).decode()
                else:
                    self._send(conn, "334 VXNlcm5hbWU6")
                    user = base64.b64decode(self._line(conn), validate=True).decode()
                self._send(conn, "334 UGFzc3dvcmQ6")
                pw = base64.b64decode(self._line(conn), validate=True).decode()
            else:
                self._reply(conn, "AUTH", arg, "504 5.5.4 mechanism not supported")
                return
        except (ValueError, binascii.Error, UnicodeDecodeError):
            self._reply(conn, "AUTH", arg, "501 5.5.2 cannot decode")
            return
        if self.auth_users.get(user) == pw:
            code = self._reply(conn, "AUTH", mech, "235 2.7.0 authenticated")
            if code == 235:
                conn.auth = user
        else:
            self._reply(conn, "AUTH", mech, "535 5.7.8 bad credentials")
        with self.cond:
            conn.commands.append("(auth %s as %r)" % (mech, user))

    def close(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self._thread.join(2)
        with self.cond:
            conns = list(self.conns)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _path_args(arg, prefix):
    """("addr", {PARAM: value}) from 'FROM:<addr> K=V ...', (None, None) if malformed."""
    if not arg[:len(prefix)].upper() == prefix:
        return None, None
    rest = arg[len(prefix):].lstrip(" ")
    if not rest.startswith("<"):
        return None, None
    end = rest.find(">")
    if end < 0:
        return None, None
    addr = rest[1:end]
    params = {}
    for p in rest[end + 1:].split():
        k, eq, v = p.partition("=")
        params[k.upper()] = v if eq else None
    return addr, params


# ---------------------------------------------------------------------------
# The network: DNS + sinks
# ---------------------------------------------------------------------------

def can_bind_port_25():
    """None if this process may listen on port 25 of 127.x addresses, else why not."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            unpriv = int(f.read())
    except (OSError, ValueError):
        unpriv = 1024
    if os.geteuid() == 0 or unpriv <= 25:
        return None
    return ("port 25 needs root (or CAP_NET_BIND_SERVICE, or ip_unprivileged_port_start <= 25); "
            "Tern delivers MX mail to port 25, so these tests must run as root")


class Mailnet:
    """One DNS server and the sinks of a test. Use as a context manager or
    call close().

    MX sinks listen on mx_port of their own loopback address: 25 when this
    process may bind it (root), else one random high port shared by all of
    them (then give Tern `relay_mx_port = <mx_port>`); $MAILNET_MX_PORT
    overrides."""

    def __init__(self, zone=None, mx_port=None):
        self.dns = DnsServer(zone)
        self.sinks = []
        self._used = set()
        if mx_port is None and os.environ.get("MAILNET_MX_PORT"):
            mx_port = int(os.environ["MAILNET_MX_PORT"])  # to try the non-root way as root
        if mx_port is None:
            mx_port = 25 if can_bind_port_25() is None else random.randint(20000, 59999)
        self.mx_port = mx_port

    def sink(self, port=None, host=None, **kw):
        """A new sink. By default it listens on mx_port of a fresh loopback
        address 127.a.b.c, so that each sink is its own "host"; port=0 on
        127.0.0.1:<ephemeral> (a smarthost)."""
        if port is None and host is None:
            for _ in range(200):
                host = self.free_address()
                try:
                    s = Sink(host, self.mx_port, **kw)
                except OSError as e:
                    if e.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                        continue
                    raise
                break
            else:
                raise AssertionError("no free loopback address for port %d" % self.mx_port)
        else:
            s = Sink(host or "127.0.0.1", self.mx_port if port is None else port, **kw)
        self.sinks.append(s)
        return s

    def free_address(self):
        """A loopback address not handed out before in this process (nothing
        listens on it yet: connections to it are refused)."""
        while True:
            a = "127.%d.%d.%d" % (random.randint(64, 250), random.randint(0, 255),
                                  random.randint(2, 254))
            if a not in self._used and a not in _ALL_USED:
                self._used.add(a)
                _ALL_USED.add(a)
                return a

    def host(self, name, *addrs, ttl=None):
        """A records for name (addresses or sinks)."""
        rec = {"A": [a.host if isinstance(a, Sink) else a for a in addrs]}
        if ttl is not None:
            rec["ttl"] = ttl
        self.dns.set(name, rec)

    def mx(self, domain, *targets, ttl=None):
        """MX records for domain. Each target is a Sink, an address string or
        (pref, Sink/address/hostname); without a preference, targets get 10,
        20, 30... in order. Sinks and addresses get a host name
        mx<N>.<domain> with an A record; a hostname is used as given."""
        mxs = []
        for i, t in enumerate(targets):
            pref, t = t if isinstance(t, tuple) else (10 * (i + 1), t)
            if isinstance(t, Sink) or _is_ip(t):
                hname = "mx%d.%s" % (i + 1, domain)
                self.host(hname, t, ttl=ttl)
            else:
                hname = t
            mxs.append((pref, hname))
        rec = {"MX": mxs}
        if ttl is not None:
            rec["ttl"] = ttl
        self.dns.set(domain, rec)

    def null_mx(self, domain):
        """RFC 7505: "MX 0 ." - the domain accepts no mail."""
        self.dns.set(domain, {"MX": [(0, ".")], "A": ["127.0.0.1"]})

    def close(self):
        for s in self.sinks:
            s.close()
        self.dns.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_ALL_USED = set()


# ---------------------------------------------------------------------------
# Filling a stopped server's queue (tests/e2e/mailnet_enqueue.c)
# ---------------------------------------------------------------------------

_helper_lock = threading.Lock()
_helpers = {}


def build_enqueue_helper(tern_bin):
    """Path of tests/e2e/mailnet_enqueue compiled against the libtern.a next to
    tern_bin (with the sanitizers when that is the build/san one), built once
    per process into <build dir>/e2e/."""
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    bdir = os.path.dirname(os.path.abspath(tern_bin))
    with _helper_lock:
        if bdir not in _helpers:
            out = os.path.join(bdir, "e2e", "mailnet_enqueue")
            os.makedirs(os.path.dirname(out), exist_ok=True)
            san = ["-fsanitize=address,undefined"] if os.path.basename(bdir) == "san" else []
            cmd = ["cc", "-std=c11", "-D_GNU_SOURCE", "-O1", "-g", "-I", os.path.join(root, "src"),
                   *san, os.path.join(root, "tests", "e2e", "mailnet_enqueue.c"),
                   os.path.join(bdir, "libtern.a"), "-lssl", "-lcrypto", "-lsqlite3", "-lcrypt",
                   "-lz", "-lcares", "-lpthread", "-o", out + ".tmp%d" % os.getpid()]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if p.returncode != 0:
                raise AssertionError("building mailnet_enqueue failed: %s" % p.stderr)
            os.replace(out + ".tmp%d" % os.getpid(), out)
            _helpers[bdir] = out
        return _helpers[bdir]


def _is_ip(s):
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False

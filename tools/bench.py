#!/usr/bin/python3
"""Tern benchmarks (`make bench`).

SMTP inbound: messages accepted durably per second (4 KiB messages, each
answered 250 only once on disk) with 1, 20 and 100 concurrent senders, the
group-commit ratio (deliveries per durable batch), peak RSS; then the RSS of
10,000 idle SMTP connections. Then POP3, the message library, IMAP, and the
outbound relay (messages per second from the queue to SMTP sinks for 20
destination domains, --relay-only). Everything runs on loopback against a
fresh data directory. Results are written as a Markdown section to --out.
"""
import argparse
import asyncio
import gc
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

MSG = ("From: bench@remote.test\r\nTo: user@bench.test\r\nSubject: bench\r\n\r\n" +
       ("x" * 76 + "\r\n") * 52)[:4096 - 5] + "\r\n"


def rss_kb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        m = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) if m else 0


class Server:
    def __init__(self, binary, extra="", users=("user@bench.test",), hashed=(), hash_="",
                 before_start=None):
        self.dir = tempfile.mkdtemp(prefix="tern-bench-")
        self.conf = os.path.join(self.dir, "tern.conf")
        with open(self.conf, "w") as f:
            f.write("hostname = mx.bench.test\ndomains = bench.test\ndata_dir = ./var\n"
                    "smtp_listen = 127.0.0.1:0\nlog_level = info\n"
                    "max_connections = 20000\nmax_connections_per_ip = 20000\n" + extra)
        for u in users:
            subprocess.run([binary, "user", "add", "-c", self.conf, u], input="pw\n",
                           text=True, check=True, capture_output=True)
        for u in hashed:  # accounts with an imported crypt hash (tern user add --hash)
            subprocess.run([binary, "user", "add", "-c", self.conf, u, "--hash"], input=hash_ + "\n",
                           text=True, check=True, capture_output=True)
        if before_start:
            before_start(self)
        # the log goes to a file so a full pipe can never slow the server down
        self.logpath = os.path.join(self.dir, "tern.log")
        self.logf = open(self.logpath, "w")
        self.proc = subprocess.Popen([binary, "serve", "-c", self.conf], stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        self.port = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            text = open(self.logpath).read()
            self.ports = {p: int(n) for p, n in re.findall(r"listening (\w+) 127\.0\.0\.1:(\d+)", text)}
            if "tern started" in text:
                self.port = self.ports.get("smtp")
                break
            time.sleep(0.05)
        if not self.ports:
            raise SystemExit("tern did not start:\n" + open(self.logpath).read())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.logf.close()
        log = open(self.logpath).read()
        shutil.rmtree(self.dir, ignore_errors=True)
        return log


async def reply(reader):
    while True:
        line = await reader.readline()
        if not line:
            raise EOFError
        if line[3:4] != b"-":
            return int(line[:3])


async def sender(port, stop_at, counts):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reply(reader)
    writer.write(b"EHLO bench.client\r\n")
    await reply(reader)
    data = MSG.encode() + b".\r\n"
    n = 0
    while time.monotonic() < stop_at:
        writer.write(b"MAIL FROM:<bench@remote.test>\r\nRCPT TO:<user@bench.test>\r\nDATA\r\n")
        codes = [await reply(reader) for _ in range(3)]
        if codes != [250, 250, 354]:
            raise RuntimeError(f"unexpected replies {codes}")
        writer.write(data)
        if await reply(reader) != 250:
            raise RuntimeError("message refused")
        n += 1
    writer.write(b"QUIT\r\n")
    await reply(reader)
    writer.close()
    counts.append(n)


async def run_senders(port, conc, secs):
    counts = []
    stop_at = time.monotonic() + secs
    t0 = time.monotonic()
    await asyncio.gather(*(sender(port, stop_at, counts) for _ in range(conc)))
    return sum(counts) / (time.monotonic() - t0)


async def idle_conns(port, n):
    conns = []
    for i in range(n):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        conns.append((r, w))
        if i % 500 == 499:
            await asyncio.sleep(0)
    for r, w in conns:
        await r.readline()
    return conns


POP3_MSGS = 100
POP3_BODY = ("y" * 1023 + "\n") * 50  # 50 KiB stored, LF line ends


def fill_maildir(root, n):
    """Write n 50 KiB messages into root/new/ as a Maildir tool would."""
    os.makedirs(os.path.join(root, "new"), exist_ok=True)
    data = ("From: bench@remote.test\nSubject: pop3 bench\n\n" + POP3_BODY).encode()[:51200]
    wire = len(data) + data.count(b"\n")
    for i in range(n):
        name = f"{1700000000 + i}.M{i}P1Q{i}.bench,S={len(data)},W={wire}"
        with open(os.path.join(root, "new", name), "wb") as f:
            f.write(data)


async def pop3_line(reader):
    line = await reader.readline()
    if not line.startswith(b"+OK"):
        raise RuntimeError(f"POP3 error: {line!r}")
    return line


async def pop3_client(port, user, stop_at, counts):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await pop3_line(reader)
    writer.write(f"USER {user}\r\nPASS pw\r\n".encode())
    await pop3_line(reader)
    await pop3_line(reader)
    n = 0
    i = 0
    while time.monotonic() < stop_at:
        writer.write(b"RETR %d\r\n" % (i % POP3_MSGS + 1))
        await pop3_line(reader)
        while (await reader.readline()) != b".\r\n":
            pass
        n += 1
        i += 1
    writer.write(b"QUIT\r\n")
    await reader.readline()
    writer.close()
    counts.append(n)


async def pop3_run(port, users, secs):
    counts = []
    stop_at = time.monotonic() + secs
    t0 = time.monotonic()
    await asyncio.gather(*(pop3_client(port, u, stop_at, counts) for u in users))
    return sum(counts) / (time.monotonic() - t0)


async def pop3_idle(port, n):
    conns = []
    for _ in range(n):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        conns.append((r, w))
    for r, w in conns:
        await r.readline()
    return conns


def bench_pop3(args):
    users = [f"u{i}@bench.test" for i in range(20)]
    srv = Server(args.binary, extra="pop3_listen = 127.0.0.1:0\n", users=users)
    for u in users:
        fill_maildir(os.path.join(srv.dir, "var", "mail", "bench.test", u.split("@")[0]), POP3_MSGS)
    rate = asyncio.run(pop3_run(srv.ports["pop3"], users, args.secs))
    n = 2000
    base = rss_kb(srv.proc.pid)
    loop = asyncio.new_event_loop()
    conns = loop.run_until_complete(pop3_idle(srv.ports["pop3"], n))
    time.sleep(0.5)
    idle = rss_kb(srv.proc.pid)
    for r, w in conns:
        w.close()
    # let the transports really close their sockets before the loop goes
    # (otherwise they linger until garbage collection and later sections
    # run out of file descriptors)
    loop.run_until_complete(asyncio.sleep(0.2))
    loop.close()
    gc.collect()
    srv.stop()
    per = (idle - base) / n
    print(f"POP3: {rate:.0f} RETR/s of 50 KiB with 20 clients; {per:.1f} KiB per idle connection")
    return rate, per, n


def bench_mime():
    p = subprocess.run(["tools/bench_mime.sh", "5"], capture_output=True, text=True, timeout=900)
    out = p.stdout if p.returncode == 0 else f"bench_mime failed:\n{p.stdout}{p.stderr}"
    print(out)
    return out


# ---------------------------------------------------------------- IMAP (issue 5)

# A cheap imported hash ($6$, 1000 rounds) for accounts the IMAP bench logs in to
# thousands of times: yescrypt at its default cost would make the login, not the
# session, the thing measured. The password is "pw".
IMAP_HASH = "$6$rounds=1000$benchsalt$GQ.7OSahZey5DtbTkdkbM7rAHxi7EXoyFgw1Qyb0xfkQjs1KeoRFHIxodhOIv/IiYf0UzXzyTQOTW4xWwMF.h/"
IMAP_BIG = 100000       # messages in the SELECT / FETCH mailbox
IMAP_SEARCH = 10000     # messages in the SEARCH BODY mailbox
IMAP_NEEDLE_EVERY = 97  # every 97th message of that mailbox contains the needle
IMAP_MIX_CLIENTS = 50
IMAP_MIX_ACCOUNTS = 10  # 5 sessions per account
IMAP_MIX_MSGS = 1000
IMAP_IDLE_ACCOUNTS = 100
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray").split()


def imap_message(i, needle=False):
    """A small (about 2-3 KiB) message with the headers a real one carries."""
    day = 1 + i % 28
    words = [WORDS[(i * 7 + k * 13) % len(WORDS)] for k in range(360)]
    if needle:
        words[200] = "needle"
    lines = [" ".join(words[k:k + 12]) for k in range(0, len(words), 12)]
    head = (f"Return-Path: <sender{i % 50}@remote.test>\n"
            f"Received: from mail.remote.test (mail.remote.test [192.0.2.{i % 250 + 1}])\n"
            f"\tby mx.bench.test with ESMTPS id B{i:08d}; Tue, {day} Nov 2026 10:{i % 60:02d}:00 +0000\n"
            f"Message-ID: <{i}.bench@remote.test>\n"
            f"Date: Tue, {day} Nov 2026 10:{i % 60:02d}:{i % 59:02d} +0000\n"
            f"From: Sender {i % 50} <sender{i % 50}@remote.test>\n"
            f"To: User <user@bench.test>\n"
            f"Cc: list{i % 7}@lists.remote.test\n"
            f"Subject: bench message {i} about {WORDS[i % len(WORDS)]}\n"
            f"MIME-Version: 1.0\n"
            f"Content-Type: text/plain; charset=utf-8\n"
            f"Content-Transfer-Encoding: 7bit\n\n")
    return (head + "\n".join(lines) + "\n").encode()


def imap_fill(root, n, needle_every=0):
    """Write n messages into root/new/ directly, as another Maildir tool would;
    returns how many contain the needle."""
    os.makedirs(os.path.join(root, "new"), exist_ok=True)
    hits = 0
    for i in range(n):
        needle = needle_every and i % needle_every == 0
        hits += bool(needle)
        data = imap_message(i, needle)
        wire = len(data) + data.count(b"\n")
        name = f"{1700000000 + i}.M{i}P1Q{i}.bench,S={len(data)},W={wire}"
        with open(os.path.join(root, "new", name), "wb") as f:
            f.write(data)
    return hits


class ImapSync:
    """Blocking raw-socket IMAP client: sends one command and reads the whole
    response (every untagged line) up to its tagged completion."""

    def __init__(self, port):
        import socket
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.buf = b""
        self.n = 0
        self.read_until(b"* OK")

    def read_until(self, start):
        """Read until a line starting with start; returns all bytes up to it."""
        pos = 0
        while True:
            i = self.buf.find(b"\r\n", pos)
            while i >= 0:
                ls = self.buf.rfind(b"\r\n", 0, i)
                ls = 0 if ls < 0 else ls + 2
                if self.buf.startswith(start, ls):
                    out, self.buf = self.buf[:i + 2], self.buf[i + 2:]
                    return out
                pos = i + 2
                i = self.buf.find(b"\r\n", pos)
            data = self.sock.recv(1 << 20)
            if not data:
                raise EOFError("IMAP server closed the connection")
            self.buf += data

    def cmd(self, text):
        self.n += 1
        tag = b"B%d" % self.n
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        out = self.read_until(tag + b" ")
        i = out.rfind(b"\r\n", 0, len(out) - 2)
        last = out[i + 2:] if i >= 0 else out
        if not last.startswith(tag + b" OK"):
            raise RuntimeError(f"IMAP {text!r}: {last!r}")
        return out

    def close(self):
        try:
            self.cmd("LOGOUT")
        except Exception:
            pass
        self.sock.close()


def rss_limit(pid):
    """The soft RLIMIT_NOFILE of process pid."""
    with open(f"/proc/{pid}/limits") as f:
        m = re.search(r"^Max open files\s+(\d+)", f.read(), re.M)
    return int(m.group(1)) if m else 0


def cpu_secs(pid):
    """User + system CPU seconds used so far by process pid."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(fn):
    t0 = time.monotonic()
    out = fn()
    return time.monotonic() - t0, out


class ImapAsync:
    """asyncio IMAP client for the mixed workload and the IDLE connections;
    handles literals in responses ({n} at the end of a line)."""

    def __init__(self, reader, writer):
        self.r, self.w = reader, writer
        self.n = 0
        self.exists = 0
        self.lat = None  # {command name: [count, seconds]} when timing is wanted

    @classmethod
    async def open(cls, port):
        r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        c = cls(r, w)
        line = await r.readline()
        if not line.startswith(b"* OK"):
            raise RuntimeError(f"IMAP greeting {line!r}")
        return c

    async def line(self):
        line = await self.r.readline()
        if not line:
            raise EOFError("IMAP server closed the connection")
        while line.endswith(b"}\r\n") and b"{" in line:
            n = int(line[line.rindex(b"{") + 1:-3].rstrip(b"+"))
            line += await self.r.readexactly(n)
            more = await self.r.readline()
            if not more:
                raise EOFError("IMAP server closed the connection")
            line += more
        return line

    async def cmd(self, text, literal=None):
        t0 = time.monotonic()
        await self._cmd(text, literal)
        if self.lat is not None:
            k = " ".join(text.split()[:2]) if text.startswith("SEARCH") else text.split()[0]
            v = self.lat.setdefault(k, [0, 0.0])
            v[0] += 1
            v[1] += time.monotonic() - t0

    async def _cmd(self, text, literal=None):
        self.n += 1
        tag = b"C%d" % self.n
        if literal is None:
            self.w.write(tag + b" " + text.encode() + b"\r\n")
        else:
            self.w.write(tag + b" " + text.encode() + b" {%d}\r\n" % len(literal))
            cont = await self.line()
            if not cont.startswith(b"+"):
                raise RuntimeError(f"IMAP {text!r}: no continuation but {cont!r}")
            self.w.write(literal + b"\r\n")
        while True:
            line = await self.line()
            if line.startswith(b"* ") and line.endswith(b" EXISTS\r\n"):
                self.exists = int(line.split()[1])
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"IMAP {text!r}: {line!r}")
                return

    async def login_select(self, user, box="INBOX"):
        await self.cmd(f"LOGIN {user} pw")
        await self.cmd(f"SELECT {box}")


async def imap_mix_client(port, user, seed, stop_at, counts, errors, lat):
    import random
    rnd = random.Random(seed)
    try:
        c = await ImapAsync.open(port)
        await c.login_select(user)
        c.lat = lat
        n = 0
        it = 0
        appended = imap_message(900000 + seed).replace(b"\n", b"\r\n")
        while time.monotonic() < stop_at:
            hi = max(1, c.exists)
            a = rnd.randint(1, max(1, hi - 4))
            await c.cmd(f"FETCH {a}:{a + 4} (FLAGS ENVELOPE)")
            await c.cmd(f"STORE {rnd.randint(1, hi)} +FLAGS (\\Seen)")
            await c.cmd("SEARCH UNSEEN")
            await c.cmd("NOOP")
            n += 4
            it += 1
            if it % 10 == 0:
                await c.cmd("APPEND INBOX ()", literal=appended)
                n += 1
        await c.cmd("LOGOUT")
        c.w.close()
        counts.append(n)
    except Exception as e:  # reported, and the row is marked
        errors.append(f"{user}: {e!r}")


async def imap_mix_run(port, users, secs):
    counts, errors, lat = [], [], {}
    stop_at = time.monotonic() + secs
    t0 = time.monotonic()
    await asyncio.gather(*(imap_mix_client(port, users[k % len(users)], k, stop_at, counts, errors, lat)
                           for k in range(IMAP_MIX_CLIENTS)))
    return sum(counts) / (time.monotonic() - t0), errors, lat


async def imap_idle_open(port, users, want, budget):
    """Open up to want sessions (LOGIN, SELECT INBOX, IDLE), at most 64 in
    flight, stopping when budget seconds have passed. Returns the sessions in
    IDLE and the errors seen."""
    conns, errors = [], []
    stop_at = time.monotonic() + budget
    sem = asyncio.Semaphore(64)

    async def one(k):
        async with sem:
            if time.monotonic() > stop_at or len(errors) > 20:
                return
            box = []

            async def steps():
                c = await ImapAsync.open(port)
                box.append(c)
                await c.login_select(users[k % len(users)])
                c.w.write(b"I IDLE\r\n")
                line = await c.line()
                if not line.startswith(b"+"):
                    raise RuntimeError(f"IDLE answered {line!r}")
                conns.append(c)

            try:
                # a server out of file descriptors stops accepting: the
                # connection then sits in the listen queue without a greeting
                await asyncio.wait_for(steps(), 15)
            except asyncio.TimeoutError:
                errors.append("no greeting or answer within 15 s")
                for c in box:
                    c.w.close()
            except Exception as e:
                errors.append(repr(e))

    await asyncio.gather(*(one(k) for k in range(want)))
    return conns, errors


async def imap_idle_close(conns):
    for c in conns:
        c.w.write(b"DONE\r\nL LOGOUT\r\n")
    await asyncio.sleep(0.5)
    for c in conns:
        c.w.close()


def imap_idle_measure(args, users, fill, want, budget, label):
    """On a fresh server (so no memory freed by earlier phases hides in the
    base), give each account fill messages, open one session per account and
    close it (indexes built, caches warm), take the RSS base, then open up to
    want sessions in IDLE. Returns a dict of figures."""
    srv = Server(args.binary, extra="imap_listen = 127.0.0.1:0\n", users=(),
                 hashed=users, hash_=IMAP_HASH)
    mail = os.path.join(srv.dir, "var", "mail", "bench.test")
    port = srv.ports["imap"]
    r = {}
    try:
        for u in users:
            imap_fill(os.path.join(mail, u.split("@")[0]), fill)
        loop = asyncio.new_event_loop()
        warm, _ = loop.run_until_complete(imap_idle_open(port, users, len(users), 120))
        loop.run_until_complete(imap_idle_close(warm))
        time.sleep(0.5)
        base = rss_kb(srv.proc.pid)
        t0 = time.monotonic()
        conns, errors = loop.run_until_complete(imap_idle_open(port, users, want, budget))
        t_open = time.monotonic() - t0
        # a selected session gives its index connection back after 5 s
        # without a command (role_imap.c): measure once all have settled
        time.sleep(7)
        rss = rss_kb(srv.proc.pid)
        n = len(conns)
        # server CPU while every session sits in IDLE (each selected session
        # polls its Maildir on a timer)
        c0, t0 = cpu_secs(srv.proc.pid), time.monotonic()
        time.sleep(5)
        r["idle_cpu"] = (cpu_secs(srv.proc.pid) - c0) / (time.monotonic() - t0) * 100
        r.update(n=n, want=want, base=base, rss=rss, open=t_open, errors=errors,
                 fds=len(os.listdir(f"/proc/{srv.proc.pid}/fd")), nofile=rss_limit(srv.proc.pid))
        loop.run_until_complete(imap_idle_close(conns))
        loop.close()
        r["per"] = (rss - base) / max(1, n)
        r["10k_mb"] = (base + r["per"] * 10000) / 1024
        print(f"IMAP: {n} sessions in IDLE {label} (opened in {t_open:.0f} s): RSS {rss / 1024:.1f} MiB "
              f"(base {base / 1024:.1f} MiB), {r['per']:.1f} KiB per connection, {r['fds']} fds, "
              f"server CPU while idle {r['idle_cpu']:.0f}% of a core"
              + (f"; {len(errors)} errors, first: {errors[0]}" if errors else ""), flush=True)
    finally:
        log = srv.stop()
    r["log"] = [l for l in log.splitlines() if re.search(r"warn|error|fatal|failed", l, re.I)]
    for l in r["log"][:3]:
        print("IMAP: server log: " + l, flush=True)
    return r


def bench_imap(args):
    res = {}
    t_start = time.monotonic()
    big, srch = "big@bench.test", "search@bench.test"
    mix = [f"mix{i}@bench.test" for i in range(IMAP_MIX_ACCOUNTS)]
    srv = Server(args.binary, extra="imap_listen = 127.0.0.1:0\n", users=(),
                 hashed=[big, srch] + mix, hash_=IMAP_HASH)
    mail = os.path.join(srv.dir, "var", "mail", "bench.test")
    port = srv.ports["imap"]
    try:
        # (a) 100,000 messages, written directly into new/
        t_fill, _ = timed(lambda: imap_fill(os.path.join(mail, "big"), IMAP_BIG))
        res["fill"] = t_fill
        print(f"IMAP: wrote {IMAP_BIG} messages in {t_fill:.1f} s", flush=True)
        c = ImapSync(port)
        c.cmd(f"LOGIN {big} pw")
        res["select1"], out = timed(lambda: c.cmd("SELECT INBOX"))
        m = re.search(rb"\* (\d+) EXISTS", out)
        res["exists"] = int(m.group(1)) if m else -1
        c.cmd("UNSELECT")
        res["select2"], _ = timed(lambda: c.cmd("SELECT INBOX"))
        res["fetch"], out = timed(lambda: c.cmd("UID FETCH 1:* (FLAGS UID)"))
        res["fetch_lines"] = out.count(b" FETCH (")
        res["fetch_bytes"] = len(out)
        res["fetch2"], _ = timed(lambda: c.cmd("UID FETCH 1:* (FLAGS UID)"))
        res["big_peak"] = rss_kb(srv.proc.pid, "VmHWM")
        c.close()
        print(f"IMAP: first SELECT (indexing) {res['select1']:.2f} s, EXISTS {res['exists']}; "
              f"second SELECT {res['select2'] * 1000:.0f} ms; UID FETCH 1:* (FLAGS UID) "
              f"{res['fetch'] * 1000:.0f} ms / {res['fetch2'] * 1000:.0f} ms, "
              f"{res['fetch_lines']} responses, peak RSS {res['big_peak'] / 1024:.1f} MiB", flush=True)

        # (b) SEARCH BODY on 10,000 messages
        hits = imap_fill(os.path.join(mail, "search"), IMAP_SEARCH, IMAP_NEEDLE_EVERY)
        c = ImapSync(port)
        c.cmd(f"LOGIN {srch} pw")
        res["search_index"], _ = timed(lambda: c.cmd("SELECT INBOX"))
        res["search1"], out = timed(lambda: c.cmd('SEARCH BODY "needle"'))
        m = re.search(rb"\* SEARCH([ 0-9]*)\r\n", out)
        res["search_found"] = len(m.group(1).split()) if m else -1
        res["search_want"] = hits
        res["search2"], _ = timed(lambda: c.cmd('SEARCH BODY "needle"'))
        c.close()
        print(f"IMAP: SEARCH BODY on {IMAP_SEARCH}: {res['search1'] * 1000:.0f} ms / "
              f"{res['search2'] * 1000:.0f} ms, {res['search_found']} found ({hits} expected)", flush=True)

        # (c) mixed workload
        for u in mix:
            imap_fill(os.path.join(mail, u.split("@")[0]), IMAP_MIX_MSGS)
        for u in mix:  # index them first: the mix measures sessions, not adoption
            c = ImapSync(port)
            c.cmd(f"LOGIN {u} pw")
            c.cmd("SELECT INBOX")
            c.close()
        rate, errors, lat = asyncio.run(imap_mix_run(port, mix, args.secs))
        res["mix"], res["mix_errors"] = rate, errors
        res["mix_lat"] = ", ".join(f"{k} {v[1] / v[0] * 1000:.1f} ms" for k, v in sorted(lat.items()))
        print(f"IMAP: mixed workload, {IMAP_MIX_CLIENTS} clients: {rate:.0f} commands/s; "
              f"mean latency {res['mix_lat']}"
              + (f"; {len(errors)} clients failed, first: {errors[0]}" if errors else ""), flush=True)
    finally:
        log = srv.stop()
    res["log"] = [l for l in log.splitlines() if re.search(r"warn|error|fatal|failed", l, re.I)]
    for l in res["log"][:3]:
        print("IMAP: server log: " + l, flush=True)

    # (d) memory per IDLE connection: sessions on a 10,000-message mailbox, then
    # as many as the budget allows on small mailboxes
    res["idle_big"] = imap_idle_measure(args, ["idlebig@bench.test"], IMAP_SEARCH, 100, 60,
                                        f"on one {IMAP_SEARCH}-message mailbox")
    budget = max(30, args.imap_budget - (time.monotonic() - t_start))
    res["idle"] = imap_idle_measure(args, [f"idle{i}@bench.test" for i in range(IMAP_IDLE_ACCOUNTS)],
                                    20, args.idle, budget,
                                    f"on {IMAP_IDLE_ACCOUNTS} accounts of 20 messages")
    return res


def imap_section(args, r):
    d, db = r["idle"], r["idle_big"]
    if d["n"] >= 10000:
        verdict = (f"10,000 IDLE connections: server RSS {d['rss'] / 1024:.0f} MiB "
                   f"— goal (< 200 MB) {'met' if d['rss'] < 200 * 1024 else 'NOT met'}")
    else:
        if d["errors"]:
            why = (f"the server refused further sessions ({len(d['errors'])} errors, first: "
                   f"`{d['errors'][0][:160]}`; it then held {d['fds']:,} file descriptors, its "
                   f"limit is {d['nofile']:,})")
        elif d["n"] >= d["want"]:
            why = f"--idle asked for {d['want']:,}"
        else:
            why = "the time budget ran out"
        verdict = (f"Only {d['n']:,} were opened: {why}. Extrapolated to 10,000: "
                   f"{d['10k_mb']:.0f} MiB — goal (< 200 MB) "
                   f"{'would be met' if d['10k_mb'] < 200 else 'NOT met'}")
    s = [
        "## IMAP (issue 5)",
        "",
        "Same machine and run; TLS off, loopback, raw-socket clients that read every response "
        "to its tagged completion. Messages are 2-3 KiB with realistic headers, written "
        "directly into the account's Maildir `new/` (as another Maildir tool would), so the "
        "first SELECT adopts and indexes them. Accounts use an imported `$6$` hash of 1000 "
        "rounds (`tern user add --hash`) so that thousands of logins measure the session, not "
        "yescrypt.",
        "",
        "| measurement | result |",
        "|---|---|",
        f"| first SELECT of {IMAP_BIG:,} new messages (first open / indexing) | "
        f"{r['select1']:.2f} s ({r['exists']:,} EXISTS) |",
        f"| second SELECT of the same mailbox | {r['select2'] * 1000:.0f} ms |",
        f"| UID FETCH 1:* (FLAGS UID), {r['fetch_lines']:,} responses, "
        f"{r['fetch_bytes'] / 2**20:.1f} MiB | {r['fetch'] * 1000:.0f} ms (again: "
        f"{r['fetch2'] * 1000:.0f} ms) |",
        f"| server peak RSS after the above | {r['big_peak'] / 1024:.1f} MiB |",
        f"| SEARCH BODY \"needle\" on {IMAP_SEARCH:,} messages (first / second run) | "
        f"{r['search1'] * 1000:.0f} ms / {r['search2'] * 1000:.0f} ms; {r['search_found']} found, "
        f"{r['search_want']} expected |",
        f"| mixed workload, {IMAP_MIX_CLIENTS} clients on {IMAP_MIX_ACCOUNTS} accounts of "
        f"{IMAP_MIX_MSGS:,} messages, {args.secs:g} s | {r['mix']:.0f} commands/s"
        + (f" ({len(r['mix_errors'])} clients FAILED)" if r["mix_errors"] else "") + " |",
        f"| memory per IDLE connection ({d['n']:,} sessions on {IMAP_IDLE_ACCOUNTS} "
        f"accounts of 20 messages, opened in {d['open']:.0f} s) | {d['per']:.1f} KiB |",
        f"| memory per IDLE connection ({db['n']} sessions on one {IMAP_SEARCH:,}-message "
        f"mailbox) | {db['per']:.0f} KiB |",
        "",
        "Mixed workload: each client logs in, SELECTs INBOX, then loops FETCH of 5 messages "
        "(FLAGS ENVELOPE), STORE +FLAGS (\\Seen) on one, SEARCH UNSEEN, NOOP, and every 10th "
        "round an APPEND of a 2-3 KiB message; every command counts as one. Mean latency per "
        f"command: {r['mix_lat']}.",
        "",
        "IDLE: each connection is LOGIN, SELECT INBOX, IDLE, answered `+ idling`; measured on a "
        "fresh server after one session per account has come and gone. "
        f"Small mailboxes: server RSS {d['rss'] / 1024:.1f} MiB with them open, "
        f"{d['base'] / 1024:.1f} MiB before, {d['fds']:,} file descriptors; server CPU while "
        f"they all sit in IDLE: {d['idle_cpu']:.0f}% of one core ({db['idle_cpu']:.0f}% with the "
        f"{db['n']} sessions on the {IMAP_SEARCH:,}-message mailbox). {verdict}.",
        "",
    ]
    return s

# ---------------------------------------------------------------- outbound relay (issue 6)

RELAY_DOMAINS = 20


def bench_relay(args):
    """Messages per second relayed from a pre-filled queue to SMTP sinks for
    RELAY_DOMAINS destination domains (each its own MX host on 127.a.b.c:25,
    found through the test DNS server of tests/e2e/mailnet.py)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
    import mailnet
    n = args.relay_msgs
    net = mailnet.Mailnet()
    res = {"n": n, "mx_port": net.mx_port}
    try:
        sinks = [net.sink(name=f"mx.d{i}.bench") for i in range(RELAY_DOMAINS)]
        for i, s in enumerate(sinks):
            net.mx(f"d{i}.bench", s)
        helper = mailnet.build_enqueue_helper(args.binary)
        t = {}

        def fill(srv):
            t0 = time.monotonic()
            p = subprocess.run([helper, "-n", str(n), "-m", str(RELAY_DOMAINS),
                                os.path.join(srv.dir, "var"), "user@bench.test", "rcpt@d%N.bench"],
                               input=MSG.encode(), capture_output=True, timeout=1800)
            if p.returncode != 0:
                raise SystemExit("mailnet_enqueue failed: " + p.stderr.decode())
            res["fill"] = time.monotonic() - t0
            t["cpu0"] = (lambda u: u.ru_utime + u.ru_stime)(resource.getrusage(resource.RUSAGE_SELF))
            t["start"] = time.monotonic()

        mxport = "" if net.mx_port == 25 else f"relay_mx_port = {net.mx_port}\n"
        srv = Server(args.binary, extra=f"dns_servers = {net.dns.address}\nqueue_retry = 1s\n" + mxport,
                     before_start=fill)
        try:
            # an inbound SMTP session sends NOOPs the whole time: how long the
            # server's loop keeps it waiting while it relays
            probe = {"lat": [], "stop": False, "err": None}

            def prober():
                try:
                    c = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
                    f = c.makefile("rb")
                    f.readline()
                    while not probe["stop"]:
                        t0 = time.monotonic()
                        c.sendall(b"NOOP\r\n")
                        if not f.readline().startswith(b"250"):
                            raise RuntimeError("NOOP refused")
                        probe["lat"].append(time.monotonic() - t0)
                        time.sleep(0.005)
                    c.close()
                except Exception as e:  # reported in the section
                    probe["err"] = repr(e)
            pth = threading.Thread(target=prober, daemon=True)
            pth.start()

            def delivered():
                return sum(len(s.messages) for s in sinks)
            deadline = time.monotonic() + args.relay_timeout
            peak = 0
            while delivered() < n and time.monotonic() < deadline and srv.proc.poll() is None:
                peak = max(peak, rss_kb(srv.proc.pid))
                time.sleep(0.01)
            end = time.monotonic()
            probe["stop"] = True
            pth.join(30)
            lat = sorted(probe["lat"]) or [0.0]
            res["noop_max"], res["noop_p99"] = lat[-1] * 1000, lat[int(len(lat) * 0.99)] * 1000
            res["noop_n"], res["noop_err"] = len(probe["lat"]), probe["err"]
            res["delivered"] = delivered()
            res["secs"] = end - t["start"]
            res["rate"] = res["delivered"] / res["secs"]
            res["cpu"] = cpu_secs(srv.proc.pid)
            res["peak"] = max(peak, rss_kb(srv.proc.pid, "VmHWM"))
            res["conns"] = sum(len(s.conns) for s in sinks)
            res["tls"] = sum(1 for s in sinks for c in s.conns if c.tls)
            res["rejected"] = sum(len(x.rejected) for s in sinks for x in s.txns)
            res["per_conn"] = res["delivered"] / max(1, res["conns"])
            res["max_conns"] = max(s.peak_conns() for s in sinks)
            res["bench_cpu"] = (lambda u: u.ru_utime + u.ru_stime)(
                resource.getrusage(resource.RUSAGE_SELF)) - t["cpu0"]

            # recording an outcome follows the peer's 250: wait for the queue to drain
            def queue_left():
                ql = subprocess.run([args.binary, "queue", "list", "-c", srv.conf],
                                    capture_output=True, text=True, timeout=60)
                if ql.returncode != 0:
                    return "unknown (`tern queue list` failed)"
                return len(re.findall(r"\b[0-9a-f]{16}\b", ql.stdout))
            drain_until = time.monotonic() + 30
            res["left"] = queue_left()
            while res["left"] not in (0,) and isinstance(res["left"], int) and \
                    time.monotonic() < drain_until:
                time.sleep(0.2)
                res["left"] = queue_left()
            res["drained"] = time.monotonic() - t["start"]
        finally:
            log = srv.stop()
        res["log"] = [l for l in log.splitlines() if re.search(r"warn|error|fatal|failed", l, re.I)]
        res["sink_errors"] = [e for s in sinks for e in s.errors]
    finally:
        net.close()
    print(f"relay: {res['delivered']}/{n} messages to {RELAY_DOMAINS} domains in {res['secs']:.1f} s: "
          f"{res['rate']:.0f} msg/s, {res['conns']} connections ({res['per_conn']:.0f} messages "
          f"per connection, {res['tls']} with STARTTLS), server CPU {res['cpu']:.1f} s, peak RSS "
          f"{res['peak'] / 1024:.1f} MiB, benchmark (sinks) CPU {res['bench_cpu']:.1f} s; queue "
          f"filled in {res['fill']:.1f} s, empty after {res['drained']:.1f} s; inbound NOOP p99 "
          f"{res['noop_p99']:.1f} ms, max {res['noop_max']:.1f} ms", flush=True)
    for l in res["log"][:3]:
        print("relay: server log: " + l, flush=True)
    return res


def relay_section(args, r):
    s = ["## Outbound relay (issue 6)", ""]
    incomplete = "" if r["delivered"] >= r["n"] else (
        f" **Only {r['delivered']:,} of {r['n']:,} were delivered within "
        f"{args.relay_timeout:g} s.**")
    s += [
        f"Same machine and run. {r['n']:,} messages of 4 KiB, each to one recipient at one of "
        f"{RELAY_DOMAINS} domains (round robin), are put into the queue of a stopped server "
        "(tests/e2e/mailnet_enqueue.c); the server then starts and delivers them. Each domain has "
        "an MX record in a DNS server run by the benchmark (`dns_servers`) pointing to its own "
        f"SMTP sink on 127.a.b.c:{r['mx_port']} (tests/e2e/mailnet.py: Python threads in the benchmark "
        "process, offering STARTTLS, PIPELINING, 8BITMIME, SIZE, DSN). Default limits "
        "(`relay_max_connections = 100`, `relay_max_per_domain = 10`). Timed from server start "
        "to the last message accepted by a sink." + incomplete,
        "",
        "| measurement | result |",
        "|---|---|",
        f"| messages relayed per second | {r['rate']:.0f} ({r['delivered']:,} in {r['secs']:.1f} s) |",
        f"| SMTP connections opened | {r['conns']:,} ({r['tls']:,} with STARTTLS; at most "
        f"{r['max_conns']} at once to one host) |",
        f"| messages per connection (reuse) | {r['per_conn']:.1f} |",
        f"| server CPU / peak RSS | {r['cpu']:.1f} s / {r['peak'] / 1024:.1f} MiB |",
        f"| CPU of the benchmark process (DNS and sinks) | {r['bench_cpu']:.1f} s |",
        f"| inbound SMTP NOOP latency meanwhile ({r['noop_n']:,} NOOPs) | 99th percentile "
        f"{r['noop_p99']:.1f} ms, max {r['noop_max']:.1f} ms"
        + (f" (probe failed: {r['noop_err']})" if r["noop_err"] else "") + " |",
        f"| queue empty (every outcome recorded) after | {r['drained']:.1f} s; "
        f"left: {r['left']} |",
        "",
    ]
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/tern")
    ap.add_argument("--out", default="docs/BENCHMARKS.md")
    ap.add_argument("--secs", type=float, default=8)
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--imap-budget", type=float, default=200,
                    help="seconds for the whole IMAP section; the IDLE part opens connections "
                    "until it runs out")
    ap.add_argument("--imap-only", action="store_true",
                    help="run only the IMAP section and print it (docs not rewritten)")
    ap.add_argument("--relay-only", action="store_true",
                    help="run only the outbound relay section and print it (docs not rewritten)")
    ap.add_argument("--relay-msgs", type=int, default=2000,
                    help="messages queued for the outbound relay section")
    ap.add_argument("--relay-timeout", type=float, default=300,
                    help="seconds the relay section waits for all of them to be delivered")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # 10,000 IMAP sessions need more than 20,000 descriptors while their
    # stores are open (socket + SQLite database, WAL and shm each, until the
    # 5 s idle suspend): as root, give the benchmark and the server (which
    # inherits it) what a service manager typically allows (systemd's
    # default hard limit is 524288).
    if os.geteuid() == 0 and hard < 65536:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
            soft, hard = 65536, 65536
        except (ValueError, OSError):
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.imap_only:
        print("\n".join(imap_section(args, bench_imap(args))))
        return
    if args.relay_only:
        print("\n".join(relay_section(args, bench_relay(args))))
        return

    rows = []
    for conc in (1, 20, 100):
        srv = Server(args.binary)
        rate = asyncio.run(run_senders(srv.port, conc, args.secs))
        peak = rss_kb(srv.proc.pid, "VmHWM")
        log = srv.stop()
        m = re.search(r"committer: (\d+) deliveries in (\d+) batches", log)
        ratio = f"{int(m.group(1)) / max(1, int(m.group(2))):.1f}" if m else "n/a"
        rows.append((conc, rate, ratio, peak))
        print(f"{conc:4d} senders: {rate:8.0f} msg/s, {ratio} deliveries per sync batch, "
              f"peak RSS {peak / 1024:.1f} MiB", flush=True)

    srv = Server(args.binary)
    base = rss_kb(srv.proc.pid)
    loop = asyncio.new_event_loop()
    conns = loop.run_until_complete(idle_conns(srv.port, args.idle))
    time.sleep(1)
    idle_rss = rss_kb(srv.proc.pid)
    for r, w in conns:
        w.close()
    # let the transports really close their sockets before the loop goes
    # (otherwise they linger until garbage collection and later sections
    # run out of file descriptors)
    loop.run_until_complete(asyncio.sleep(0.2))
    loop.close()
    gc.collect()
    srv.stop()
    print(f"{args.idle} idle connections: RSS {idle_rss / 1024:.1f} MiB (at start {base / 1024:.1f} MiB)")

    pop3_rate, pop3_idle_kb, pop3_n = bench_pop3(args)
    mime_out = bench_mime()
    imap = bench_imap(args)
    relay = bench_relay(args)

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except Exception:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    fs = subprocess.run(["df", "-T", tempfile.gettempdir()], capture_output=True, text=True).stdout.splitlines()[-1].split()[1]
    section = [
        "## SMTP inbound (issue 2)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} with `make bench` (`tools/bench.py`), "
        f"{args.secs:g} s per row, on {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, "
        f"data on {fs} in {tempfile.gettempdir()}, {platform.system()} {platform.release()}. "
        "The load generator (Python asyncio) runs on the same machine and shares its cores.",
        "",
        "4 KiB messages to one local recipient; each sender waits for the 250, which Tern sends "
        "only when the message file and its directory are fsynced.",
        "",
        "| concurrent senders | messages/s | deliveries per sync batch | peak RSS |",
        "|---|---|---|---|",
    ]
    for conc, rate, ratio, peak in rows:
        section.append(f"| {conc} | {rate:.0f} | {ratio} | {peak / 1024:.1f} MiB |")
    section += ["", f"{args.idle} idle SMTP connections (greeted, then silent): server RSS "
                f"{idle_rss / 1024:.1f} MiB (at start {base / 1024:.1f} MiB).", ""]
    section += [
        "## POP3 (issue 4)",
        "",
        f"Same machine and run. 20 clients, each logged in to its own account holding {POP3_MSGS} "
        f"messages of 50 KiB, RETR them in turn for {args.secs:g} s (TLS off, loopback):",
        "",
        f"- messages retrieved: {pop3_rate:.0f} per second ({pop3_rate * 50 / 1024:.0f} MiB/s)",
        f"- memory per idle POP3 connection: {pop3_idle_kb:.1f} KiB of server RSS "
        f"({pop3_n} connections greeted, then silent)",
        "",
        "## Message library (issue 3)",
        "",
        "Parse throughput on a mixed corpus (tools/bench_mime.sh, run by `make bench`), against "
        "GMime 3 parsing the same bytes in the same process:",
        "",
        "```",
        mime_out.strip(),
        "```",
        "",
    ]
    section += imap_section(args, imap)
    section += relay_section(args, relay)
    text = "\n".join(section)
    old = ""
    if os.path.exists(args.out):
        old = open(args.out).read()
    head = "# Benchmarks\n\nFigures from `make bench`; newest run of each section replaces the old one.\n\n"
    # this tool owns everything from its first section to the end of the file
    if "## SMTP inbound (issue 2)" in old:
        old = old[:old.index("## SMTP inbound (issue 2)")] + text
    else:
        old = (old or head) + text
    with open(args.out, "w") as f:
        f.write(old)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

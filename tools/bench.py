#!/usr/bin/python3
"""Tern benchmarks (`make bench`).

SMTP inbound: messages accepted durably per second (4 KiB messages, each
answered 250 only once on disk) with 1, 20 and 100 concurrent senders, the
group-commit ratio (deliveries per durable batch), peak RSS; then the RSS of
10,000 idle SMTP connections. Everything runs on loopback against a fresh
data directory. Results are written as a Markdown section to --out.
"""
import argparse
import asyncio
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

MSG = ("From: bench@remote.test\r\nTo: user@bench.test\r\nSubject: bench\r\n\r\n" +
       ("x" * 76 + "\r\n") * 52)[:4096 - 5] + "\r\n"


def rss_kb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        m = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) if m else 0


class Server:
    def __init__(self, binary, extra="", users=("user@bench.test",)):
        self.dir = tempfile.mkdtemp(prefix="tern-bench-")
        self.conf = os.path.join(self.dir, "tern.conf")
        with open(self.conf, "w") as f:
            f.write("hostname = mx.bench.test\ndomains = bench.test\ndata_dir = ./var\n"
                    "smtp_listen = 127.0.0.1:0\nlog_level = info\n"
                    "max_connections = 20000\nmax_connections_per_ip = 20000\n" + extra)
        for u in users:
            subprocess.run([binary, "user", "add", "-c", self.conf, u], input="pw\n",
                           text=True, check=True, capture_output=True)
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
    loop.close()
    srv.stop()
    per = (idle - base) / n
    print(f"POP3: {rate:.0f} RETR/s of 50 KiB with 20 clients; {per:.1f} KiB per idle connection")
    return rate, per, n


def bench_mime():
    p = subprocess.run(["tools/bench_mime.sh", "5"], capture_output=True, text=True, timeout=900)
    out = p.stdout if p.returncode == 0 else f"bench_mime failed:\n{p.stdout}{p.stderr}"
    print(out)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/tern")
    ap.add_argument("--out", default="docs/BENCHMARKS.md")
    ap.add_argument("--secs", type=float, default=8)
    ap.add_argument("--idle", type=int, default=10000)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

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
    loop.close()
    srv.stop()
    print(f"{args.idle} idle connections: RSS {idle_rss / 1024:.1f} MiB (at start {base / 1024:.1f} MiB)")

    pop3_rate, pop3_idle_kb, pop3_n = bench_pop3(args)
    mime_out = bench_mime()

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

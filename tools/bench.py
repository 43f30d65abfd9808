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
    def __init__(self, binary, extra=""):
        self.dir = tempfile.mkdtemp(prefix="tern-bench-")
        self.conf = os.path.join(self.dir, "tern.conf")
        with open(self.conf, "w") as f:
            f.write("hostname = mx.bench.test\ndomains = bench.test\ndata_dir = ./var\n"
                    "smtp_listen = 127.0.0.1:0\nlog_level = info\n"
                    "max_connections = 20000\nmax_connections_per_ip = 20000\n" + extra)
        subprocess.run([binary, "user", "add", "-c", self.conf, "user@bench.test"], input="pw\n",
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
            m = re.search(r"listening smtp 127\.0\.0\.1:(\d+)", text)
            if m and "tern started" in text:
                self.port = int(m.group(1))
                break
            time.sleep(0.05)
        if not self.port:
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
    text = "\n".join(section)
    old = ""
    if os.path.exists(args.out):
        old = open(args.out).read()
    head = "# Benchmarks\n\nFigures from `make bench`; newest run of each section replaces the old one.\n\n"
    if "## SMTP inbound (issue 2)" in old:
        old = re.sub(r"## SMTP inbound \(issue 2\).*?(?=\n## |\Z)", text.rstrip() + "\n", old, flags=re.S)
    else:
        old = (old or head) + text
    with open(args.out, "w") as f:
        f.write(old)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

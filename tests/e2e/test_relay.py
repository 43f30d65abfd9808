"""Outbound delivery end to end (issue 6 "Done means"), on loopback only.

Each test runs its own DNS server and SMTP sinks (mailnet.py): MX hosts are
sinks on 127.a.b.c:25 (Tern delivers MX mail to port 25; without root, on one
high port given to Tern as relay_mx_port), smarthosts are sinks on ephemeral
ports. Tern gets `dns_servers` pointing at the test's DNS server and a short
`queue_retry`.

Mail enters the queue through one function, enqueue(); see its docstring for
the method used. Every wait is a poll with a bounded timeout.
"""
import email
import email.policy
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import TERN
from mailnet import Mailnet, Sink, build_enqueue_helper

ALICE = "alice@example.org"


# ---------------------------------------------------------------------------
# Getting mail into the queue
# ---------------------------------------------------------------------------

def enqueue_helper():
    return build_enqueue_helper(TERN)


def restart(t, timeout=20):
    """Stops (SIGTERM) a running server if needed and starts it again."""
    if t.proc and t.proc.poll() is None:
        t.stop()
    t.proc, t.lines, t.ports = None, [], {}
    t.start(timeout)


SUBMIT_USER, SUBMIT_PASSWORD = ALICE, "alicepw"


def enqueue(t, sender, rcpts, data, ret=None, envid=None, arrival=None, smtputf8=False):
    """Puts one message (bytes, CRLF) into t's outbound queue. rcpts are
    addresses, (addr, NOTIFY) pairs with NOTIFY like "FAILURE+DELAY" or "-",
    or (addr, NOTIFY, ORCPT) triples with ORCPT like "rfc822;x@y"; ret
    "FULL"/"HDRS" and envid are RFC 3461's. This is the one place that
    decides how mail gets in:

    - server running: submission (RFC 6409) on t's submission port with
      STARTTLS and AUTH as alice, the way users send mail. Returns None (the
      250 names no queue id).
    - server stopped: tests/e2e/mailnet_enqueue.c writes it into the queue
      through the queue library (as if left over from an earlier run; needed
      to have many messages waiting at start, and for `arrival`). Returns the
      queue id."""
    running = t.proc is not None and t.proc.poll() is None
    if running:
        assert arrival is None, "arrival needs a stopped server"
        return submit(t, sender, rcpts, data, ret, envid, smtputf8)
    args = [enqueue_helper()]
    if ret:
        args += ["-r", ret]
    if envid:
        args += ["-e", envid]
    if arrival is not None:
        args += ["-a", str(int(arrival))]
    if smtputf8:
        args += ["-U"]
    args += [t.data, sender]
    for r in rcpts:
        args.append(",".join(r) if isinstance(r, tuple) else r)
    p = subprocess.run(args, input=data, capture_output=True, timeout=30)
    assert p.returncode == 0, "mailnet_enqueue: %r" % p.stderr
    qid = p.stdout.decode().strip()
    assert re.fullmatch(r"[0-9a-f]{16}", qid), qid
    return qid


def _xtext(s):
    """RFC 3461 4: xtext (for ENVID and ORCPT)."""
    return "".join(c if 33 <= ord(c) <= 126 and c not in "+=" else "+%02X" % ord(c) for c in s)


def submit(t, sender, rcpts, data, ret=None, envid=None, smtputf8=False):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", t.submission_port, local_hostname="client.example.org",
                      timeout=30) as c:
        c.ehlo()
        c.starttls(context=ctx)
        c.ehlo()
        c.login(SUBMIT_USER, SUBMIT_PASSWORD)
        opts = []
        if ret:
            opts.append("RET=" + ret)
        if envid:
            opts.append("ENVID=" + _xtext(envid))
        if any(b >= 0x80 for b in data):
            opts.append("BODY=8BITMIME")
        if smtputf8:
            opts.append("SMTPUTF8")
        code, text = c.mail(sender, opts)
        assert code == 250, (code, text)
        for r in rcpts:
            r = r if isinstance(r, tuple) else (r,)
            ropts = []
            if len(r) > 1 and r[1] != "-":
                ropts.append("NOTIFY=" + r[1].replace("+", ","))
            if len(r) > 2:
                kind, _, addr = r[2].partition(";")
                ropts.append("ORCPT=%s;%s" % (kind, _xtext(addr)))
            code, text = c.rcpt(r[0], ropts)
            assert code == 250, (r, code, text)
        code, text = c.data(data)
        assert code == 250, (code, text)
    return None


def message(subject="test", sender=ALICE, to="bob@remote.test", body="Hello.\r\n", headers=""):
    text = ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n"
            "Date: Thu, 26 Nov 2026 12:00:00 +0000\r\n%s\r\n%s" %
            (sender, to, subject, subject.replace(" ", "."), headers, body))
    return text.encode("utf-8")


# ---------------------------------------------------------------------------
# Fixtures and waits
# ---------------------------------------------------------------------------

@pytest.fixture
def net():
    n = Mailnet()
    yield n
    n.close()
    assert n.dns.errors == [], n.dns.errors
    for s in n.sinks:
        assert s.errors == [], s.errors


@pytest.fixture
def relay_tern(make_tern, net):
    """make(extra="", start=True): a Tern whose resolver is the test's DNS server."""

    def make(extra="", start=True, retry="1s", **kw):
        conf = "dns_servers = %s\nqueue_retry = %s\n" % (net.dns.address, retry) + extra
        if net.mx_port != 25:
            conf += "relay_mx_port = %d\n" % net.mx_port
        return make_tern(conf, start=start, submission=True, **kw)

    return make


def poll(pred, timeout=15, what="condition", t=None, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            log = ("\ntern log:\n" + "\n".join(t.lines[-40:])) if t is not None else ""
            raise AssertionError("timed out after %ss waiting for %s%s" % (timeout, what, log))
        time.sleep(interval)


def queue_list(t):
    return t.cli("queue", "list").stdout


def queue_ids(t):
    return re.findall(r"\b[0-9a-f]{16}\b", queue_list(t))


def wait_queue_empty(t, timeout=15):
    poll(lambda: not queue_ids(t), timeout, "an empty queue", t)


def inbox(t, addr, n, timeout=15):
    """Waits for at least n messages in addr's INBOX; returns them parsed."""
    poll(lambda: len(t.messages(addr)) >= n, timeout, "%d messages for %s" % (n, addr), t)
    return [email.message_from_bytes(b, policy=email.policy.compat32) for b in
            t.read_messages(addr)]


def dsn_parts(msg):
    """(per-message fields, [per-recipient fields], returned part) of an RFC 3464 DSN."""
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert parts[0].get_content_type() == "text/plain"
    ctype = parts[1].get_content_type()
    # RFC 6533 3.5: message/global-delivery-status when addresses need UTF-8
    assert ctype in ("message/delivery-status", "message/global-delivery-status"), ctype
    blocks = parts[1].get_payload()
    if ctype == "message/global-delivery-status":
        # not known to the email package: parsed as one message (the
        # per-message fields as headers, the rest as body); split it again
        blk = blocks[0] if isinstance(blocks, list) else blocks
        text = blk if isinstance(blk, str) else blk.as_bytes().decode("utf-8")
        text = text.replace("\r\n", "\n").strip("\n")
        blocks = [email.message_from_string(b + "\n") for b in re.split(r"\n\s*\n", text)]
    blocks = [{k: _unescape(v) for k, v in b.items()} for b in blocks]
    return blocks[0], blocks[1:], (parts[2] if len(parts) > 2 else None)


def _unescape(v):
    """A header value as text: the compat32 parser keeps raw UTF-8 octets as
    surrogate escapes."""
    try:
        return v.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        return v


def assert_no_mail_anywhere(t):
    root = os.path.join(t.data, "mail")
    found = []
    for d, _, files in os.walk(root):
        if os.path.basename(d) in ("new", "cur"):
            found += [os.path.join(d, f) for f in files]
    assert found == [], found


# ---------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------

def test_delivery_via_mx(relay_tern, net):
    sink = net.sink(name="mx1.remote.test")
    net.mx("remote.test", sink)
    t = relay_tern()
    enqueue(t, ALICE, ["bob@remote.test"], message("via mx"))
    (m,) = sink.wait_for(1)
    assert m.mail_from == ALICE and m.rcpt_addrs == ["bob@remote.test"]
    assert m.helo == "mx.example.org"
    assert b"Subject: via mx\r\n" in m.data and m.data.endswith(b"Hello.\r\n")
    assert net.dns.count("remote.test", "MX") >= 1
    head = m.data.split(b"\r\n\r\n")[0]
    assert head.startswith(b"Received: ") and b"ESMTPSA" in head, head  # the submission's trace
    wait_queue_empty(t)
    assert_no_mail_anywhere(t)  # no DSN for a plain success


def test_a_fallback_without_mx(relay_tern, net):
    sink = net.sink()
    net.host("remote.test", sink)  # A record only (RFC 5321 5.1 implicit MX)
    t = relay_tern()
    enqueue(t, ALICE, ["bob@remote.test"], message("implicit mx"))
    (m,) = sink.wait_for(1)
    assert m.rcpt_addrs == ["bob@remote.test"]
    assert net.dns.count("remote.test", "MX") >= 1 and net.dns.count("remote.test", "A") >= 1


def test_mx_preference_order(relay_tern, net):
    low, high = net.sink(name="low"), net.sink(name="high")
    net.mx("remote.test", (20, high), (10, low))  # listed in the wrong order on purpose
    t = relay_tern()
    enqueue(t, ALICE, ["bob@remote.test"], message("order"))
    low.wait_for(1)
    wait_queue_empty(t)
    assert high.conns == []


def test_mx_fallback_when_first_host_down(relay_tern, net):
    down = net.free_address()  # nothing listens: connection refused
    greets_421 = net.sink(name="busy")
    greets_421.on("CONNECT", "421 4.3.2 too busy")
    good = net.sink(name="good")
    net.mx("remote.test", (10, down), (20, greets_421), (30, good))
    t = relay_tern()
    enqueue(t, ALICE, ["bob@remote.test"], message("fallback"))
    (m,) = good.wait_for(1)
    assert m.rcpt_addrs == ["bob@remote.test"]
    assert len(greets_421.conns) >= 1 and greets_421.messages == []
    wait_queue_empty(t)


def test_null_mx_bounces(relay_tern, net):
    net.null_mx("nomail.test")
    t = relay_tern()
    enqueue(t, ALICE, ["bob@nomail.test"], message("to null mx", to="bob@nomail.test"))
    (dsn,) = inbox(t, ALICE, 1)
    _, rcpts, _ = dsn_parts(dsn)
    assert len(rcpts) == 1
    assert rcpts[0]["Action"].strip() == "failed"
    assert rcpts[0]["Status"].strip().startswith("5.")  # 5.1.10 per RFC 7505 3
    assert "bob@nomail.test" in rcpts[0]["Final-Recipient"]
    wait_queue_empty(t)


def test_starttls_when_offered(relay_tern, net):
    tls = net.sink(name="tls")
    plain = net.sink(name="plain", caps=("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"))
    net.mx("tls.test", tls)
    net.mx("plain.test", plain)
    t = relay_tern()
    enqueue(t, ALICE, ["a@tls.test", "b@plain.test"], message("tls"))
    (m,) = tls.wait_for(1)
    assert m.tls and m.conn.tls_version.startswith("TLSv1.")
    assert m.helo == "mx.example.org"  # EHLO again after STARTTLS (RFC 3207 4.2)
    assert m.conn.commands[:2] == ["EHLO mx.example.org", "STARTTLS"]
    (p,) = plain.wait_for(1)
    assert not p.tls and "STARTTLS" not in p.conn.commands
    assert not m.conn.injected


def test_tempfail_then_success_on_retry(relay_tern, net):
    sink = net.sink()
    sink.on("RCPT", "451 4.3.0 greylisted, try again", times=1)
    net.mx("remote.test", sink)
    t = relay_tern()
    enqueue(t, ALICE, ["bob@remote.test"], message("greylist"))
    (m,) = sink.wait_for(1, timeout=30)
    txns = sink.txns
    assert txns[0].rejected == [("bob@remote.test", 451)] and not txns[0].accepted
    assert m.rcpt_addrs == ["bob@remote.test"]
    wait_queue_empty(t)
    assert_no_mail_anywhere(t)  # no bounce and no delay warning


def test_tempfail_on_connect_then_success(relay_tern, net):
    sink = net.sink()
    sink.on("CONNECT", "421 4.3.2 not now", times=1)
    net.mx("remote.test", sink)
    t = relay_tern()
    enqueue(t, ALICE, ["bob@remote.test"], message("later"))
    sink.wait_for(1, timeout=30)
    assert len(sink.conns) >= 2
    wait_queue_empty(t)


def test_permfail_bounce_is_dsn_in_senders_inbox(relay_tern, net):
    sink = net.sink(name="mx.remote.test")
    sink.on("RCPT", "550 5.1.1 no such user here")
    net.mx("remote.test", sink)
    t = relay_tern()
    enqueue(t, ALICE, ["nobody@remote.test"], message("will bounce", to="nobody@remote.test"))
    (dsn,) = inbox(t, ALICE, 1)
    assert dsn["To"] and ALICE in dsn["To"]
    assert "MAILER-DAEMON" in dsn["From"].upper()
    per_msg, rcpts, returned = dsn_parts(dsn)
    assert "mx.example.org" in per_msg["Reporting-MTA"]
    assert len(rcpts) == 1
    r = rcpts[0]
    assert r["Action"].strip() == "failed"
    assert r["Status"].strip() == "5.1.1"
    assert re.search(r"rfc822;\s*nobody@remote\.test", r["Final-Recipient"])
    assert "550" in r["Diagnostic-Code"] and "no such user" in r["Diagnostic-Code"]
    assert returned is not None and "Subject: will bounce" in returned.as_string()
    wait_queue_empty(t)
    assert len(sink.txns) == 1  # permanent: not retried


def test_null_sender_never_bounces(relay_tern, net):
    sink = net.sink()
    sink.on("RCPT", "550 5.1.1 no such user")
    net.mx("remote.test", sink)
    t = relay_tern()
    enqueue(t, "", ["nobody@remote.test"], message("a bounce itself"))
    sink.wait(lambda: sink.txns and sink.txns[0].rejected, 15, "the refused RCPT")
    (txn,) = sink.txns
    assert txn.mail_from == "" and txn.rejected == [("nobody@remote.test", 550)]
    wait_queue_empty(t)
    assert_no_mail_anywhere(t)


def test_mixed_recipients_only_failed_bounced(relay_tern, net):
    sink = net.sink()
    sink.on("RCPT", "550 5.1.1 unknown", match="bad@")
    net.mx("remote.test", sink)
    t = relay_tern()
    enqueue(t, ALICE, ["good@remote.test", "bad@remote.test"], message("mixed"))
    (m,) = sink.wait_for(1)
    assert m.rcpt_addrs == ["good@remote.test"]
    (dsn,) = inbox(t, ALICE, 1)
    _, rcpts, _ = dsn_parts(dsn)
    assert [r["Final-Recipient"].split(";")[1].strip() for r in rcpts] == ["bad@remote.test"]
    assert rcpts[0]["Action"].strip() == "failed"
    wait_queue_empty(t)
    assert len(sink.messages) == 1


def test_eightbit_to_7bit_peer_bounces_without_sending(relay_tern, net):
    sink = net.sink(caps=("PIPELINING", "ENHANCEDSTATUSCODES", "STARTTLS"))  # no 8BITMIME
    net.mx("remote.test", sink)
    t = relay_tern()
    enqueue(t, ALICE, ["bob@remote.test"],
            message("8bit", body="Gr\u00fc\u00dfe aus K\u00f6ln.\r\n",
                    headers="MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                            "Content-Transfer-Encoding: 8bit\r\n"))
    (dsn,) = inbox(t, ALICE, 1)
    _, rcpts, _ = dsn_parts(dsn)
    assert rcpts[0]["Action"].strip() == "failed" and rcpts[0]["Status"].strip().startswith("5.")
    wait_queue_empty(t)
    assert [x for x in sink.txns if x.via] == []  # never sent
    for c in sink.conns:
        assert "DATA" not in c.commands and not any(x.startswith("BDAT") for x in c.commands)


def test_eightbit_to_8bitmime_peer(relay_tern, net):
    sink = net.sink()
    net.mx("remote.test", sink)
    t = relay_tern()
    body = "Gr\u00fc\u00dfe.\r\n"
    enqueue(t, ALICE, ["bob@remote.test"],
            message("8bit ok", body=body, headers="MIME-Version: 1.0\r\n"
                    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"))
    (m,) = sink.wait_for(1)
    assert m.mail_params.get("BODY") == "8BITMIME"
    assert m.data.endswith(body.encode())


def test_smarthost_auth_after_starttls(relay_tern, net):
    smart = net.sink(port=0, name="smarthost", auth={"relay": "s3cret"}, require_auth=True)
    net.mx("remote.test", net.sink(name="not-used"))
    t = relay_tern("relay_host = 127.0.0.1:%d\nrelay_auth = relay:s3cret\n" % smart.port)
    enqueue(t, ALICE, ["bob@remote.test", "carol@other.test"], message("smarthost"))
    smart.wait_for(1)
    poll(lambda: sorted(a for m in smart.messages for a in m.rcpt_addrs) ==
         ["bob@remote.test", "carol@other.test"], 15, "both recipients at the smarthost", t)
    for m in smart.messages:
        assert m.auth == "relay" and m.tls
        cmds = m.conn.commands
        assert cmds.index("STARTTLS") < min(i for i, c in enumerate(cmds) if c.startswith("AUTH"))
    assert net.dns.count("remote.test") == 0 and net.dns.count("other.test") == 0
    wait_queue_empty(t)


def test_smarthost_never_sends_password_in_clear(relay_tern, net):
    smart = net.sink(port=0, caps=("PIPELINING", "8BITMIME"), auth={"relay": "s3cret"},
                     auth_needs_tls=False, require_auth=True)
    t = relay_tern("relay_host = 127.0.0.1:%d\nrelay_auth = relay:s3cret\n" % smart.port)
    enqueue(t, ALICE, ["bob@remote.test"], message("no tls"))
    smart.wait_conns(1, timeout=15)
    smart.wait_closed(timeout=15)
    for c in smart.conns:
        assert not any(x.upper().startswith("AUTH") for x in c.commands), c.commands
    assert smart.messages == []
    assert "bob@remote.test" in queue_list(t)  # deferred, not lost


def test_smarthost_without_auth(relay_tern, net):
    smart = net.sink(port=0, caps=("PIPELINING", "8BITMIME"))
    t = relay_tern("relay_host = 127.0.0.1:%d\n" % smart.port)
    enqueue(t, ALICE, ["bob@remote.test"], message("plain smarthost"))
    (m,) = smart.wait_for(1)
    assert m.auth is None and not m.tls and m.rcpt_addrs == ["bob@remote.test"]


def test_one_connection_reused_for_several_messages(relay_tern, net):
    sink = net.sink()
    net.mx("remote.test", sink)
    t = relay_tern("relay_max_per_domain = 1\n", start=False)
    for i in range(5):
        enqueue(t, ALICE, ["user%d@remote.test" % i], message("reuse %d" % i))
    t.start()
    msgs = sink.wait_for(5)
    assert sorted(a for m in msgs for a in m.rcpt_addrs) == ["user%d@remote.test" % i
                                                             for i in range(5)]
    assert len(sink.conns) == 1, sink.conns
    assert len(sink.conns[0].txns) == 5
    wait_queue_empty(t)


def test_queue_list_delete_flush(relay_tern, net):
    sink = net.sink()
    sink.on("RCPT", "451 4.3.0 not yet")
    net.mx("remote.test", sink)
    t = relay_tern(retry="1h", start=False)
    keep = enqueue(t, ALICE, ["keep@remote.test"], message("keep"))
    drop = enqueue(t, ALICE, ["drop@remote.test"], message("drop"))
    t.start()
    sink.wait(lambda: sum(len(x.rejected) for x in sink.txns) >= 2, 15, "both attempts")
    out = poll(lambda: (lambda o: o if "451" in o and o.count("451") >= 2 else None)(queue_list(t)),
               15, "both messages deferred with their error in queue list", t)
    for qid, rcpt in ((keep, "keep@remote.test"), (drop, "drop@remote.test")):
        assert qid in out and rcpt in out
    assert ALICE in out
    p = t.cli("queue", "delete", drop)
    assert drop not in queue_list(t) and keep in queue_list(t), p.stdout
    bad = t.cli("queue", "delete", "0123456789abcdef", check=False)
    assert bad.returncode != 0
    sink.clear_rules()
    t.cli("queue", "flush")
    (m,) = sink.wait_for(1, timeout=15)
    assert m.rcpt_addrs == ["keep@remote.test"]
    wait_queue_empty(t)
    assert not any("drop@remote.test" in x.rcpt_addrs for x in sink.txns[2:])
    assert_no_mail_anywhere(t)  # delete is silent


def test_restart_with_nonempty_queue(relay_tern, net):
    addr = net.free_address()  # the MX host is down at first
    net.mx("remote.test", addr)
    t = relay_tern(retry="2s")
    enqueue(t, ALICE, ["bob@remote.test"], message("survives restart"))
    poll(lambda: re.search(r"refused|connect", queue_list(t), re.I), 15,
         "a failed attempt in queue list", t)
    t.stop()
    sink = Sink(addr, net.mx_port)
    net.sinks.append(sink)
    restart(t)
    (m,) = sink.wait_for(1, timeout=30)
    assert m.rcpt_addrs == ["bob@remote.test"] and b"survives restart" in m.data
    wait_queue_empty(t)


def test_kill9_during_delivery_not_lost(relay_tern, net):
    sink = net.sink()
    sink.on("EOM", "hang", times=1)  # holds the first transaction after the data
    net.mx("remote.test", sink)
    t = relay_tern()
    enqueue(t, ALICE, ["bob@remote.test"], message("kill -9"))
    (held,) = sink.wait_data(1)
    assert held.reply is None
    t.proc.send_signal(signal.SIGKILL)
    t.proc.wait(10)
    restart(t)
    msgs = sink.wait_for(1, timeout=30)
    wait_queue_empty(t)
    # the held transaction never got its 250, so no duplicate is allowed
    assert len(sink.messages) == 1 and msgs[0].rcpt_addrs == ["bob@remote.test"]
    assert b"Subject: kill -9" in msgs[0].data


def test_inbound_served_while_deliveries_hang(relay_tern, net):
    sinks = []
    for i in range(10):
        s = net.sink(name="hang%d" % i)
        s.on("CONNECT", "hang")  # accepts, never greets
        net.mx("d%d.test" % i, s)
        sinks.append(s)
    net.dns.set("slowdns.test", "DROP")  # resolver timeouts too
    t = relay_tern(start=False)
    for i in range(40):
        enqueue(t, ALICE, ["u%d@d%d.test" % (i, i % 10), "x@slowdns.test"], message("load %d" % i))
    t.start()
    for s in sinks:
        s.wait_conns(1, timeout=15)
    start = time.monotonic()
    with smtplib.SMTP("127.0.0.1", t.smtp_port, timeout=5) as c:
        c.sendmail("someone@remote.test", ["bob@example.org"], message("inbound", to="bob@example.org"))
    assert time.monotonic() - start < 5
    inbox(t, "bob@example.org", 1)


def test_dns_tempfail_defers(relay_tern, net):
    sink = net.sink()
    net.dns.set("remote.test", "SERVFAIL")
    t = relay_tern(retry="1s")
    enqueue(t, ALICE, ["bob@remote.test"], message("dns later"))
    poll(lambda: net.dns.count("remote.test", "MX") >= 1, 15, "an MX query", t)
    net.mx("remote.test", sink)
    (m,) = sink.wait_for(1, timeout=30)
    wait_queue_empty(t)
    assert_no_mail_anywhere(t)


def test_nxdomain_bounces(relay_tern, net):
    net.dns.set("nowhere.test", "NXDOMAIN")
    t = relay_tern()
    enqueue(t, ALICE, ["bob@nowhere.test"], message("nx"))
    (dsn,) = inbox(t, ALICE, 1)
    _, rcpts, _ = dsn_parts(dsn)
    assert rcpts[0]["Action"].strip() == "failed" and rcpts[0]["Status"].strip().startswith("5.")


def test_pipelining_when_offered_only(relay_tern, net):
    pipe = net.sink(name="pipe")
    nopipe = net.sink(name="nopipe", caps=("8BITMIME", "ENHANCEDSTATUSCODES"))
    net.mx("pipe.test", pipe)
    net.mx("nopipe.test", nopipe)
    t = relay_tern()
    enqueue(t, ALICE, ["a@pipe.test", "b@pipe.test", "c@nopipe.test", "d@nopipe.test"],
            message("pipelining"))
    (p,) = pipe.wait_for(1)
    (n,) = nopipe.wait_for(1)
    assert p.rcpt_addrs == ["a@pipe.test", "b@pipe.test"]
    assert n.rcpt_addrs == ["c@nopipe.test", "d@nopipe.test"]
    # RFC 2920: MAIL, the RCPTs and DATA in one batch to a PIPELINING peer
    assert any(c.startswith("MAIL FROM:") for c in p.conn.pipelined), p.conn.commands
    # and one command at a time to a peer without it
    assert not any(c.split(" ")[0] in ("MAIL", "RCPT", "DATA") for c in n.conn.pipelined), \
        n.conn.pipelined


def test_size_declared_and_too_big_bounces(relay_tern, net):
    small = net.sink(name="small", caps=("PIPELINING", "8BITMIME", "SIZE 2000"))
    big = net.sink(name="big")
    net.mx("small.test", small)
    net.mx("big.test", big)
    t = relay_tern()
    body = "".join("line %04d of a message that is too big for small.test\r\n" % i
                   for i in range(100))
    enqueue(t, ALICE, ["x@small.test", "y@big.test"], message("size", body=body))
    (m,) = big.wait_for(1)
    assert int(m.mail_params["SIZE"]) == len(m.data)  # RFC 1870 SIZE= of the wire form
    (dsn,) = inbox(t, ALICE, 1)
    _, rcpts, _ = dsn_parts(dsn)
    assert [r["Final-Recipient"].split(";")[1].strip() for r in rcpts] == ["x@small.test"]
    assert rcpts[0]["Status"].strip().startswith("5.")
    wait_queue_empty(t)
    assert [x for x in small.txns if x.via] == []  # never sent


def test_dsn_parameters_passed_to_dsn_peer(relay_tern, net):
    sink = net.sink()  # offers DSN
    net.mx("remote.test", sink)
    t = relay_tern()
    enqueue(t, ALICE, [("bob@remote.test", "SUCCESS+FAILURE", "rfc822;bob@orig.test"),
                       ("carol@remote.test", "NEVER")],
            message("dsn params"), ret="HDRS", envid="env-42")
    (m,) = sink.wait_for(1)
    assert m.mail_params.get("RET") == "HDRS" and m.mail_params.get("ENVID") == "env-42"
    params = dict(m.rcpts)
    assert params["bob@remote.test"]["NOTIFY"].split(",") == ["SUCCESS", "FAILURE"]
    assert params["bob@remote.test"]["ORCPT"].lower() == "rfc822;bob@orig.test"
    assert params["carol@remote.test"]["NOTIFY"] == "NEVER"
    wait_queue_empty(t)
    assert_no_mail_anywhere(t)  # the DSN peer reports success itself, not us


def test_relayed_dsn_for_notify_success_to_non_dsn_peer(relay_tern, net):
    sink = net.sink(caps=("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"))  # no DSN
    net.mx("remote.test", sink)
    t = relay_tern()
    enqueue(t, ALICE, [("bob@remote.test", "SUCCESS")], message("relayed"))
    (m,) = sink.wait_for(1)
    assert "NOTIFY" not in m.rcpts[0][1]  # not offered: not sent
    (dsn,) = inbox(t, ALICE, 1)
    _, rcpts, _ = dsn_parts(dsn)
    assert rcpts[0]["Action"].strip() == "relayed" and rcpts[0]["Status"].strip().startswith("2.")
    wait_queue_empty(t)


def test_bounce_ret_hdrs_returns_headers_only(relay_tern, net):
    sink = net.sink()
    sink.on("RCPT", "550 5.1.1 gone")
    net.mx("remote.test", sink)
    t = relay_tern()
    enqueue(t, ALICE, ["bob@remote.test"], message("hdrs only", body="SECRET BODY\r\n"),
            ret="HDRS", envid="env-7")
    (dsn,) = inbox(t, ALICE, 1)
    per_msg, _, returned = dsn_parts(dsn)
    assert per_msg["Original-Envelope-Id"].strip() == "env-7"
    assert returned.get_content_type() == "text/rfc822-headers"
    raw = t.read_messages(ALICE)[0]
    assert b"Subject: hdrs only" in raw and b"SECRET BODY" not in raw


@pytest.mark.slow
def test_delay_warning_then_lifetime_bounce(relay_tern, net):
    sink = net.sink()
    sink.on("RCPT", "451 4.3.0 not today")
    net.mx("remote.test", sink)
    t = relay_tern("queue_delay_warning = 1s\nqueue_lifetime = 4s\n")
    enqueue(t, ALICE, ["bob@remote.test"], message("slow"))
    first = inbox(t, ALICE, 1, timeout=20)[0]
    _, rcpts, _ = dsn_parts(first)
    assert rcpts[0]["Action"].strip() == "delayed"
    assert rcpts[0]["Status"].strip().startswith("4.")
    msgs = inbox(t, ALICE, 2, timeout=30)
    actions = sorted(dsn_parts(m)[1][0]["Action"].strip() for m in msgs)
    assert actions == ["delayed", "failed"]
    final = [m for m in msgs if dsn_parts(m)[1][0]["Action"].strip() == "failed"][0]
    assert "451" in final.as_string()
    wait_queue_empty(t)
    assert len(sink.txns) >= 2  # retried before giving up


def test_smtputf8_negotiated(relay_tern, net):
    utf = net.sink(name="utf")
    ascii_only = net.sink(name="ascii", caps=("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"))
    net.mx("utf.test", utf)
    net.mx("ascii.test", ascii_only)
    t = relay_tern()
    enqueue(t, ALICE, ["j\u00f6rg@utf.test", "j\u00f6rg@ascii.test"],
            message("utf8", headers="MIME-Version: 1.0\r\n"), smtputf8=True)
    (m,) = utf.wait_for(1)
    assert "SMTPUTF8" in m.mail_params and m.rcpt_addrs == ["j\u00f6rg@utf.test"]
    (dsn,) = inbox(t, ALICE, 1)
    _, rcpts, _ = dsn_parts(dsn)
    assert len(rcpts) == 1 and "j\u00f6rg@ascii.test" in rcpts[0]["Final-Recipient"]
    assert rcpts[0]["Action"].strip() == "failed" and rcpts[0]["Status"].strip().startswith("5.")
    wait_queue_empty(t)
    assert [x for x in ascii_only.txns if x.via] == []


def test_per_domain_connection_limit(relay_tern, net):
    sink = net.sink()
    sink.on("CONNECT", "hang")  # accepted, never greeted: every delivery stays open
    net.mx("remote.test", sink)
    t = relay_tern("relay_max_per_domain = 2\n", start=False)
    for i in range(6):
        enqueue(t, ALICE, ["u%d@remote.test" % i], message("limit %d" % i))
    t.start()
    sink.wait_conns(2)
    time.sleep(1)  # a third connection would have come by now
    assert len(sink.conns) == 2 and sink.peak_conns() == 2


def test_total_connection_limit(relay_tern, net):
    sinks = []
    for i in range(5):
        s = net.sink(name="h%d" % i)
        s.on("CONNECT", "hang")
        net.mx("d%d.test" % i, s)
        sinks.append(s)
    t = relay_tern("relay_max_connections = 3\n", start=False)
    enqueue(t, ALICE, ["u@d%d.test" % i for i in range(5)], message("total limit"))
    t.start()
    poll(lambda: sum(len(s.conns) for s in sinks) >= 3, 15, "3 connections", t)
    time.sleep(1)
    assert sum(len(s.conns) for s in sinks) == 3


def test_close_after_greeting_then_next_mx(relay_tern, net):
    rude = net.sink(name="rude")
    rude.on("EHLO", "close")
    good = net.sink(name="good")
    net.mx("remote.test", rude, good)
    t = relay_tern()
    enqueue(t, ALICE, ["bob@remote.test"], message("closed"))
    (m,) = good.wait_for(1)
    assert rude.messages == [] and len(rude.conns) >= 1


def test_permanent_greeting_on_only_host_bounces(relay_tern, net):
    sink = net.sink()
    sink.on("CONNECT", "554 5.7.1 go away")
    net.mx("remote.test", sink)
    t = relay_tern()
    enqueue(t, ALICE, ["bob@remote.test"], message("554 greeting"))
    (dsn,) = inbox(t, ALICE, 1)
    _, rcpts, _ = dsn_parts(dsn)
    assert rcpts[0]["Action"].strip() == "failed" and rcpts[0]["Status"].strip().startswith("5.")
    assert "554" in rcpts[0].get("Diagnostic-Code", "")
    wait_queue_empty(t)


@pytest.mark.slow
def test_too_many_recipients_452_rest_retried(relay_tern, net):
    sink = net.sink()
    # RFC 5321 4.5.3.1.10: at most 2 recipients per transaction here
    sink.on("RCPT", lambda conn, arg: "452 4.5.3 too many recipients"
            if len(conn.txns[-1].rcpts) >= 2 else None)
    net.mx("remote.test", sink)
    t = relay_tern()
    rcpts = ["u%d@remote.test" % i for i in range(5)]
    enqueue(t, ALICE, rcpts, message("many rcpts"))
    poll(lambda: sorted(a for m in sink.messages for a in m.rcpt_addrs) == rcpts, 30,
         "all 5 recipients delivered", t)
    assert all(len(m.rcpts) <= 2 for m in sink.messages)
    wait_queue_empty(t)
    assert_no_mail_anywhere(t)


@pytest.mark.parametrize("caps", [("PIPELINING", "8BITMIME"), ("PIPELINING", "8BITMIME", "CHUNKING")],
                         ids=["data", "bdat"])
def test_content_byte_exact(relay_tern, net, caps):
    sink = net.sink(caps=caps)
    net.mx("remote.test", sink)
    t = relay_tern()
    lines = []
    for i in range(20000):  # about 1 MiB, with the lines that need dot-stuffing
        lines.append(("." if i % 7 == 0 else "") + ("..x" if i % 11 == 0 else "") +
                     "line %05d " % i + "abcdefghij" * 4)
    lines[100] = "."  # a line that is a single dot
    body = "\r\n".join(lines) + "\r\n"
    data = message("big", body=body)
    enqueue(t, ALICE, ["bob@remote.test"], data)
    (m,) = sink.wait_for(1, timeout=30)
    assert m.via in ("DATA", "BDAT")  # BDAT is optional (the relay uses DATA today)
    assert m.data.endswith(body.encode()), "content changed in transit"
    assert m.data.endswith(data.split(b"\r\n\r\n", 1)[1])


def test_smarthost_down_then_up(relay_tern, net):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    t = relay_tern("relay_host = 127.0.0.1:%d\n" % port)
    enqueue(t, ALICE, ["bob@remote.test"], message("smarthost later"))
    poll(lambda: re.search(r"attempts\W*[1-9]", queue_list(t)), 15, "a failed attempt", t)
    smart = net.sink(port=port, caps=("PIPELINING", "8BITMIME"))
    (m,) = smart.wait_for(1, timeout=30)
    assert m.rcpt_addrs == ["bob@remote.test"]
    wait_queue_empty(t)


def test_bounce_to_remote_sender_goes_out_with_null_sender(relay_tern, net):
    refuses = net.sink(name="refuses")
    refuses.on("RCPT", "550 5.1.1 unknown user")
    home = net.sink(name="home")  # the sender's domain
    net.mx("remote.test", refuses)
    net.mx("sender.test", home)
    t = relay_tern(start=False)
    enqueue(t, "someone@sender.test", ["nobody@remote.test"],
            message("from afar", sender="someone@sender.test"))
    t.start()
    (dsn,) = home.wait_for(1)
    assert dsn.mail_from == "" and dsn.rcpt_addrs == ["someone@sender.test"]
    parsed = email.message_from_bytes(dsn.data, policy=email.policy.compat32)
    _, rcpts, _ = dsn_parts(parsed)
    assert rcpts[0]["Action"].strip() == "failed" and "nobody@remote.test" in \
        rcpts[0]["Final-Recipient"]
    wait_queue_empty(t)


def test_mx_host_without_address_skipped(relay_tern, net):
    good = net.sink()
    net.dns.set("ghost.remote.test", "NXDOMAIN")
    net.mx("remote.test", (10, "ghost.remote.test"), (20, good))
    t = relay_tern()
    enqueue(t, ALICE, ["bob@remote.test"], message("ghost mx"))
    good.wait_for(1)
    wait_queue_empty(t)


def test_second_address_of_a_host(relay_tern, net):
    good = net.sink()
    net.host("mx.remote.test", net.free_address(), good)  # first address refuses
    net.mx("remote.test", (10, "mx.remote.test"))
    t = relay_tern()
    enqueue(t, ALICE, ["bob@remote.test"], message("two addresses"))
    good.wait_for(1)
    wait_queue_empty(t)


@pytest.mark.slow
def test_sigterm_during_data_then_restart(relay_tern, net):
    sink = net.sink()
    sink.on("EOM", "hang", times=1)
    net.mx("remote.test", sink)
    t = relay_tern()
    enqueue(t, ALICE, ["bob@remote.test"], message("sigterm"))
    sink.wait_data(1)
    t0 = time.monotonic()
    # the server waits for deliveries in flight, but only until its 30 s stop
    # deadline, not for the peer's 10-minute final-reply timeout
    t.stop(timeout=45)
    assert time.monotonic() - t0 < 40
    restart(t)
    sink.wait_for(1, timeout=30)
    wait_queue_empty(t)
    assert len(sink.messages) == 1  # the held copy never got a 250: no duplicate


def test_reused_connection_survives_failed_transactions(relay_tern, net):
    """One connection, five messages: refused sender, every recipient refused
    (DATA then fails too), a 451 after the data, and two good ones. Each
    failure affects its own message only; the session goes on (RSET)."""
    sink = net.sink()
    sink.on("MAIL", "550 5.7.1 sender refused", match="refused@")
    sink.on("RCPT", "550 5.1.1 no such user", match="nouser@")
    sink.on("EOM", "451 4.3.0 try later", times=1, match="Subject: eom-tempfail")
    net.mx("remote.test", sink)
    t = relay_tern("relay_max_per_domain = 1\n", start=False)
    enqueue(t, "refused@example.org", ["a@remote.test"], message("mail-refused"))
    enqueue(t, ALICE, ["ok1@remote.test"], message("good-1"))
    enqueue(t, ALICE, ["nouser@remote.test"], message("rcpt-refused"))
    enqueue(t, ALICE, ["later@remote.test"], message("eom-tempfail"))
    enqueue(t, ALICE, ["ok2@remote.test"], message("good-2"))
    t.start()
    poll(lambda: sorted(a for m in sink.messages for a in m.rcpt_addrs) ==
         ["later@remote.test", "ok1@remote.test", "ok2@remote.test"], 30,
         "the three deliverable messages", t)
    first = sink.conns[0]
    got = [a for x in first.txns if x.accepted for a in x.rcpt_addrs]
    # the 451'd message may come back on the same connection, if still open
    assert {"ok1@remote.test", "ok2@remote.test"} <= set(got), first.commands
    # RSET after each failed transaction: no MAIL is ever "nested"
    assert ("MAIL", 503) not in first.replies, first.replies
    (dsn,) = inbox(t, ALICE, 1)  # refused@example.org has no mailbox: only alice's bounce
    _, rcpts, _ = dsn_parts(dsn)
    assert [r["Final-Recipient"].split(";")[1].strip() for r in rcpts] == ["nouser@remote.test"]
    wait_queue_empty(t)


def test_kill9_after_peer_accepted_duplicate_only_there(relay_tern, net):
    """The one allowed duplicate: the peer accepted (250 after the data) but
    the server died before recording it. Here the sink kills the server
    just before it sends that 250, so the server can never record it."""
    sink = net.sink()
    t = relay_tern()

    def kill_then_accept(conn, arg):
        t.proc.send_signal(signal.SIGKILL)
        t.proc.wait(10)
        return "250 2.0.0 accepted, but nobody hears it"

    sink.on("EOM", kill_then_accept, times=1)
    net.mx("remote.test", sink)
    enqueue(t, ALICE, ["bob@remote.test"], message("dup"))
    sink.wait_for(1)
    t.proc.wait(10)
    restart(t)
    msgs = sink.wait_for(2, timeout=30)
    wait_queue_empty(t)
    assert len(sink.messages) == 2 and msgs[0].data == msgs[1].data
    assert_no_mail_anywhere(t)


@pytest.mark.slow
@pytest.mark.parametrize("trouble", ["refused", "servfail"])
def test_lifetime_bounce_for_connection_and_dns_trouble(relay_tern, net, trouble):
    if trouble == "refused":
        net.mx("remote.test", net.free_address())  # MX host down
    else:
        net.dns.set("remote.test", "SERVFAIL")
    t = relay_tern("queue_lifetime = 3s\nqueue_delay_warning = 1h\n")
    enqueue(t, ALICE, ["bob@remote.test"], message("lifetime " + trouble))
    (dsn,) = inbox(t, ALICE, 1, timeout=30)
    _, rcpts, _ = dsn_parts(dsn)
    assert rcpts[0]["Action"].strip() == "failed"
    assert re.fullmatch(r"[45]\.\d{1,3}\.\d{1,3}", rcpts[0]["Status"].strip())
    wait_queue_empty(t)
    if trouble == "servfail":
        assert net.dns.count("remote.test", "MX") >= 2  # retried before giving up


def test_starttls_454_continues_in_plaintext(relay_tern, net):
    sink = net.sink()
    sink.on("STARTTLS", "454 4.7.0 TLS not available now")
    net.mx("remote.test", sink)
    t = relay_tern()
    enqueue(t, ALICE, ["bob@remote.test"], message("454"))
    (m,) = sink.wait_for(1, timeout=20)
    assert not m.tls and m.conn.commands.count("STARTTLS") == 1  # opportunistic (RFC 7435)


def test_tls_handshake_failure_then_delivered(relay_tern, net):
    sink = net.sink()

    def not_tls(conn, arg):
        conn.sock.sendall(b"220 2.0.0 go ahead\r\nthis is not a TLS record\r\n")
        return "close"

    sink.on("STARTTLS", not_tls, times=1)
    net.mx("remote.test", sink)
    t = relay_tern()
    enqueue(t, ALICE, ["bob@remote.test"], message("broken tls"))
    (m,) = sink.wait_for(1, timeout=20)
    assert len(sink.conns) >= 2 and sink.conns[0].txns == []


def test_queue_delete_during_delivery(relay_tern, net):
    """`tern queue delete` of a message whose data the peer is holding: the
    late 250 is ignored, nothing is retried or bounced, the server lives on."""
    release = threading.Event()
    sink = net.sink()

    def hold(conn, arg):
        release.wait(30)
        return None  # then the default 250

    sink.on("EOM", hold, times=1)
    net.mx("remote.test", sink)
    t = relay_tern(start=False)
    qid = enqueue(t, ALICE, ["bob@remote.test"], message("deleted in flight"))
    t.start()
    sink.wait_data(1)
    out = t.cli("queue", "delete", qid)
    assert qid in out.stdout
    assert qid not in queue_list(t)
    release.set()
    sink.wait_for(1)
    # the server still works: another message goes through
    enqueue(t, ALICE, ["carol@remote.test"], message("after delete"))
    sink.wait_for(2)
    wait_queue_empty(t)
    assert [m.rcpt_addrs for m in sink.messages] == [["bob@remote.test"], ["carol@remote.test"]]
    assert_no_mail_anywhere(t)
    assert t.proc.poll() is None


def test_bounce_of_a_big_message_returns_headers_only(relay_tern, net):
    sink = net.sink()
    sink.on("RCPT", "550 5.1.1 gone")
    net.mx("remote.test", sink)
    t = relay_tern()
    body = ("x" * 70 + "\r\n") * 24000  # about 1.7 MB: more than a DSN returns whole
    enqueue(t, ALICE, ["bob@remote.test"], message("too big to return", body=body), ret="FULL")
    (dsn,) = inbox(t, ALICE, 1)
    _, rcpts, returned = dsn_parts(dsn)
    assert rcpts[0]["Action"].strip() == "failed"
    assert returned.get_content_type() == "text/rfc822-headers"
    assert "too big to return" in returned.as_string()
    assert os.path.getsize(t.messages(ALICE)[0]) < 100000


def test_greeting_hang_then_next_mx(relay_tern, net):
    silent = net.sink(name="silent")
    silent.on("CONNECT", "hang")  # accepts the connection, never says 220
    good = net.sink(name="good")
    net.mx("remote.test", silent, good)
    t = relay_tern("relay_timeout = 2s\n")  # instead of RFC 5321's 5 minutes for the 220
    enqueue(t, ALICE, ["bob@remote.test"], message("greeting timeout"))
    (m,) = good.wait_for(1, timeout=20)
    assert len(silent.conns) >= 1 and m.rcpt_addrs == ["bob@remote.test"]

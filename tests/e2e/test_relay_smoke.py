"""Outbound relay smoke tests in smarthost mode (relay_host), so no DNS is
needed: queued mail reaches a Python SMTP sink, a 4xx is retried, a 5xx
comes back to a local sender as a DSN, STARTTLS + AUTH to the smarthost,
restart with a non-empty queue, SIGTERM with deliveries in flight. The
DNS/MX battery is test_relay.py (mailnet fixtures)."""
import os
import signal
import subprocess
import time

import pytest

from relay_sink import Sink, build_helper, enqueue

MSG = "From: alice@example.org\nTo: bob@remote.test\nSubject: hi\n\nhello\n.dot line\n"


@pytest.fixture(scope="module")
def helper(tmp_path_factory):
    return build_helper(tmp_path_factory.mktemp("helper"))


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


def relay_conf(port, extra="", retry="1s"):
    return f"relay_host = 127.0.0.1:{port}\nqueue_retry = {retry}\n" + extra


def wait_for(pred, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_smarthost_delivery(make_tern, helper, sink):
    t = make_tern(relay_conf(sink.port), start=False)
    qid = enqueue(helper, t.data, "alice@example.org", ["bob@remote.test", "carol@remote.test"],
                  MSG)
    t.start()
    assert sink.wait(1)
    m = sink.messages[0]
    assert m["from"] == "alice@example.org"
    assert sorted(m["to"]) == ["bob@remote.test", "carol@remote.test"]
    assert b"hello\r\n.dot line\r\n" in m["data"]
    t.wait_log(qid + r" relay to=<bob@remote.test> relay=127.0.0.1\[127.0.0.1\]:\d+ "
               r"attempt=1 status=sent result=\"250 2.0.0 queued\"")
    t.wait_log(qid + " relay removed")
    assert t.cli("queue", "list").stdout.strip() == "Queue is empty"


def test_connection_reused_for_several_messages(make_tern, helper, sink):
    t = make_tern(relay_conf(sink.port, "relay_max_per_domain = 1\n"), start=False)
    for i in range(5):
        enqueue(helper, t.data, "alice@example.org", [f"u{i}@remote.test"], MSG)
    t.start()
    assert sink.wait(5)
    mails = [s for s in sink.sessions if any(c.upper().startswith("MAIL") for c in s)]
    assert len(mails) == 1, sink.sessions
    assert sum(c.upper().startswith("MAIL") for c in mails[0]) == 5


def test_tempfail_then_retry(make_tern, helper, sink):
    seen = []

    def rcpt(addr):
        seen.append(addr)
        return "451 4.3.0 try later" if len(seen) == 1 else "250 2.1.5 ok"
    sink.rcpt_reply = rcpt
    t = make_tern(relay_conf(sink.port, retry="1h"), start=False)
    qid = enqueue(helper, t.data, "alice@example.org", ["bob@remote.test"], MSG)
    t.start()
    t.wait_log(qid + r" relay to=<bob@remote.test> .*status=deferred result=\"451 4.3.0 try later\"")
    assert wait_for(lambda: "deferred" in t.cli("queue", "list").stdout)
    out = t.cli("queue", "list").stdout
    assert qid in out and "deferred" in out and "attempts=1" in out, out
    assert "451 4.3.0 try later" in out, out
    # queue_retry = 1h: only a flush brings it back now
    assert "due now" in t.cli("queue", "flush").stdout
    assert sink.wait(1)
    t.wait_log(qid + r" relay to=<bob@remote.test> .*attempt=2 status=sent")
    assert wait_for(lambda: t.cli("queue", "list").stdout.strip() == "Queue is empty")


def test_permfail_bounces_to_local_sender(make_tern, helper, sink):
    sink.rcpt_reply = lambda a: ("550 5.1.1 no such user here" if a.startswith("nobody")
                                 else "250 2.1.5 ok")
    t = make_tern(relay_conf(sink.port), start=False)
    qid = enqueue(helper, t.data, "alice@example.org", ["nobody@remote.test", "bob@remote.test"],
                  MSG)
    t.start()
    assert sink.wait(1)
    assert sink.messages[0]["to"] == ["bob@remote.test"]
    t.wait_log(qid + r" relay to=<nobody@remote.test> .*status=bounced")
    # the DSN is queued to alice (local) and delivered into her INBOX
    assert wait_for(lambda: len(t.messages("alice@example.org")) == 1)
    dsn = t.read_messages("alice@example.org")[0]
    assert b"multipart/report" in dsn and b"report-type=delivery-status" in dsn
    assert b"nobody@remote.test" in dsn and b"550" in dsn
    assert b"Return-Path: <>" in dsn
    assert wait_for(lambda: t.cli("queue", "list").stdout.strip() == "Queue is empty")


def test_local_recipient_in_queue_and_unknown_local_user(make_tern, helper, sink):
    t = make_tern(relay_conf(sink.port), start=False)
    qid = enqueue(helper, t.data, "someone@remote.test",
                  ["bob@example.org", "ghost@example.org"], MSG)
    t.start()
    assert wait_for(lambda: len(t.messages("bob@example.org")) == 1)
    t.wait_log(qid + r" relay to=<ghost@example.org> relay=local .*status=bounced")
    # the bounce for ghost goes to the remote sender through the smarthost
    assert sink.wait(1)
    assert sink.messages[0]["from"] == ""
    assert sink.messages[0]["to"] == ["someone@remote.test"]


def test_starttls_and_auth_to_smarthost(make_tern, helper, tmp_path):
    t = make_tern("", start=False)
    # the server's self-signed certificate is made on first start: make one now
    cert, key = str(tmp_path / "c.pem"), str(tmp_path / "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=sink.test", "-days", "2",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    s = Sink(tls_cert=cert, tls_key=key, auth="relayuser:s3cret")
    try:
        t.write_conf(t.base_conf + relay_conf(s.port, "relay_auth = relayuser:s3cret\n"))
        enqueue(helper, t.data, "alice@example.org", ["bob@remote.test"], MSG)
        t.start()
        assert s.wait(1)
        assert s.messages[0]["tls"] and s.messages[0]["authed"]
        t.wait_log(r"relay 127.0.0.1\[127.0.0.1\]:\d+ starttls version=TLSv1.[23] .* verify=")
        cmds = [c for sess in s.sessions for c in sess]
        # AUTH only after STARTTLS
        assert cmds.index("STARTTLS") < [i for i, c in enumerate(cmds) if c.startswith("AUTH")][0]
    finally:
        s.close()


def test_smarthost_down_then_restart_delivers(make_tern, helper, sink):
    # a closed port: connection refused, deferred with the reason
    closed = Sink()
    port = closed.port
    closed.close()
    t = make_tern(relay_conf(port, retry="1h"), start=False)
    qid = enqueue(helper, t.data, "alice@example.org", ["bob@remote.test"], MSG)
    t.start()
    t.wait_log(qid + r" relay to=<bob@remote.test> .*status=deferred .*Connection refused")
    assert wait_for(lambda: "deferred" in t.cli("queue", "list").stdout)
    out = t.cli("queue", "list").stdout
    assert "deferred" in out and "Connection refused" in out, out
    assert t.stop() == 0
    # restart pointing at a live sink; flush makes it due at once
    t.write_conf(t.base_conf + relay_conf(sink.port, retry="1h"))
    t.cli("queue", "flush")
    t.start()
    assert sink.wait(1)
    assert wait_for(lambda: t.cli("queue", "list").stdout.strip() == "Queue is empty")


def test_kill9_then_restart_delivers(make_tern, helper, sink):
    # the sink holds the DATA reply until released: kill -9 while delivering
    import threading
    gate = threading.Event()

    def data_reply(msg):
        gate.wait(30)
        return "250 2.0.0 queued"
    sink.data_reply = data_reply
    t = make_tern(relay_conf(sink.port), start=False)
    qid = enqueue(helper, t.data, "alice@example.org", ["bob@remote.test"], MSG)
    t.start()
    assert wait_for(lambda: any("DATA" in s for s in sink.sessions))
    t.proc.kill()
    t.proc.wait(10)
    gate.set()
    sink.data_reply = lambda msg: "250 2.0.0 queued"
    assert len(sink.messages) <= 1
    t.start()
    # the claim is recovered and the message delivered (again: at least once)
    t.wait_log(qid + r" relay to=<bob@remote.test> .*status=sent", timeout=20)
    assert wait_for(lambda: t.cli("queue", "list").stdout.strip() == "Queue is empty")


def test_sigterm_with_slow_smarthost(make_tern, helper, sink):
    import threading
    gate = threading.Event()

    def rcpt(addr):
        gate.wait(60)
        return "250 2.1.5 ok"
    sink.rcpt_reply = rcpt
    t = make_tern(relay_conf(sink.port, retry="1h"), start=False)
    qid = enqueue(helper, t.data, "alice@example.org", ["bob@remote.test"], MSG)
    t.start()
    assert wait_for(lambda: any(c.startswith("RCPT") for s in sink.sessions for c in s))
    t0 = time.monotonic()
    t.signal(signal.SIGTERM)
    t.proc.wait(40)
    gate.set()
    assert time.monotonic() - t0 < 35
    # released, not failed: still queued, no attempt counted, never lost
    out = t.cli("queue", "list").stdout
    assert qid in out and "queued" in out and "attempts=0" in out, out


def test_mx_mode_domain_literal_and_dns_failure(make_tern, helper, sink):
    # no relay_host: an address literal needs no DNS (RFC 5321 4.1.3), the
    # MX port is the sink's; a domain while the resolver is unreachable is
    # deferred (temporary), never bounced
    t = make_tern(f"relay_mx_port = {sink.port}\ndns_servers = 127.0.0.1:9\n"
                  "queue_retry = 1h\n", start=False)
    q1 = enqueue(helper, t.data, "alice@example.org", ["bob@[127.0.0.1]"], MSG)
    q2 = enqueue(helper, t.data, "alice@example.org", ["carol@unresolvable.test"], MSG)
    t.start()
    assert sink.wait(1)
    assert sink.messages[0]["to"] == ["bob@[127.0.0.1]"]
    t.wait_log(q1 + r" relay to=<bob@\[127.0.0.1\]> relay=127.0.0.1\[127.0.0.1\]:\d+ .*status=sent")
    t.wait_log(q2 + r" relay to=<carol@unresolvable.test> relay=none .*status=deferred",
               timeout=30)
    assert wait_for(lambda: "deferred" in t.cli("queue", "list").stdout)
    out = t.cli("queue", "list").stdout
    assert q2 in out and "deferred" in out and q1 not in out, out


def test_silent_smarthost_times_out(make_tern, helper):
    s = Sink(greeting="")
    try:
        t = make_tern(relay_conf(s.port, "relay_timeout = 1s\n", retry="1h"), start=False)
        qid = enqueue(helper, t.data, "alice@example.org", ["bob@remote.test"], MSG)
        t.start()
        t.wait_log(qid + r" relay to=<bob@remote.test> .*status=deferred .*Timeout waiting for "
                   r"the greeting", timeout=15)
        assert wait_for(lambda: "deferred" in t.cli("queue", "list").stdout)
        out = t.cli("queue", "list").stdout
        assert "deferred" in out and "attempts=1" in out, out
    finally:
        s.close()


def test_greeting_refused_bounces(make_tern, helper):
    # the only host refuses every session with 554: permanent, bounced to the
    # local sender (RFC 5321 3.1: 554 greeting, QUIT)
    s = Sink(greeting="554 5.7.1 go away")
    try:
        t = make_tern(relay_conf(s.port), start=False)
        qid = enqueue(helper, t.data, "alice@example.org", ["bob@remote.test"], MSG)
        t.start()
        t.wait_log(qid + r" relay to=<bob@remote.test> .*status=bounced .*554", timeout=15)
        assert wait_for(lambda: len(t.messages("alice@example.org")) == 1)
    finally:
        s.close()

"""`tern queue list|flush|delete`: against a stopped server and while one runs.
Messages are put in the queue with queue_helper (the queue library) while the
server is stopped; a smarthost on a closed port keeps them deferred."""
import re
import socket
import subprocess
import time

import pytest

from relay_sink import Sink, build_helper, enqueue
from conftest import TERN

MSG = "From: alice@example.org\nSubject: q\n\nbody\n"


@pytest.fixture(scope="module")
def helper(tmp_path_factory):
    return build_helper(tmp_path_factory.mktemp("helper"))


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sub", ["list", "flush", "delete"])
def test_help(sub):
    p = subprocess.run([TERN, "queue", sub, "--help"], capture_output=True, text=True)
    assert p.returncode == 0
    assert "tern queue list" in p.stdout and "tern queue delete" in p.stdout


def test_usage_errors(make_tern):
    t = make_tern(start=False)
    p = subprocess.run([TERN, "queue"], capture_output=True, text=True)
    assert p.returncode == 2 and "usage" in p.stderr
    p = subprocess.run([TERN, "queue", "bogus", "-c", t.conf], capture_output=True, text=True)
    assert p.returncode == 2 and "unknown queue command" in p.stderr
    p = subprocess.run([TERN, "queue", "delete", "-c", t.conf], capture_output=True, text=True)
    assert p.returncode == 2 and "needs an ID" in p.stderr
    p = subprocess.run([TERN, "queue", "delete", "-c", t.conf, "../etc"], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "not a queue id" in p.stderr
    p = subprocess.run([TERN, "queue", "list"], capture_output=True, text=True)
    assert p.returncode == 2 and "-c FILE is required" in p.stderr
    p = t.cli("queue", "delete", "0123456789abcdef", check=False)
    assert p.returncode == 1 and "no message" in p.stderr


def test_list_empty(make_tern):
    t = make_tern(start=False)
    assert t.cli("queue", "list").stdout.strip() == "Queue is empty"


def test_list_delete_offline(make_tern, helper):
    t = make_tern(start=False)
    a = enqueue(helper, t.data, "alice@example.org", ["x@remote.test", "y@other.test"], MSG)
    b = enqueue(helper, t.data, "", ["z@remote.test"], MSG)
    out = t.cli("queue", "list").stdout
    assert re.search(a + r"  \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ  \d+ bytes  from <alice@example.org>",
                     out), out
    assert b + "  " in out and "from <>" in out
    assert re.search(r"<x@remote.test>  queued  attempts=0  next=now", out), out
    assert "2 messages, 3 recipients" in out
    assert t.cli("queue", "delete", a).stdout.strip() == f"deleted {a}"
    out = t.cli("queue", "list").stdout
    assert a not in out and b in out and "1 message, 1 recipient" in out
    assert t.cli("queue", "flush").stdout.strip() == "1 recipient due now"


def test_while_running(make_tern, helper):
    port = closed_port()
    t = make_tern(f"relay_host = 127.0.0.1:{port}\nqueue_retry = 1h\n", start=False)
    a = enqueue(helper, t.data, "alice@example.org", ["x@remote.test"], MSG)
    b = enqueue(helper, t.data, "alice@example.org", ["y@remote.test"], MSG)
    t.start()
    for q in (a, b):
        t.wait_log(q + r" relay to=.* attempt=1 status=deferred .*Connection refused")
    # the log line comes just before the result is committed
    assert wait_for(lambda: t.cli("queue", "list").stdout.count("deferred") == 2)
    out = t.cli("queue", "list").stdout
    assert re.search(r"<x@remote.test>  deferred  attempts=1  next=\d{4}-", out), out
    assert "Connection refused" in out and "2 messages" in out
    # delete while the server runs: no DSN, gone from the list
    assert t.cli("queue", "delete", b).returncode == 0
    assert b not in t.cli("queue", "list").stdout
    # flush: the running server retries at once (attempt 2), not in an hour
    n = len(t.lines)
    assert t.cli("queue", "flush").stdout.strip() == "1 recipient due now"
    t.wait_log(r"relay: flush requested", start=n)
    t.wait_log(a + r" relay to=<x@remote.test> .*attempt=2 status=deferred", start=n)
    assert b not in t.log_text()[t.log_text().find("flush requested"):]
    # now bring a smarthost up and flush again: delivered, queue empty
    sink = Sink()
    try:
        t.stop()
        t.write_conf(t.base_conf + f"relay_host = 127.0.0.1:{sink.port}\nqueue_retry = 1h\n")
        t.start()
        t.cli("queue", "flush")
        assert sink.wait(1)
        assert sink.messages[0]["to"] == ["x@remote.test"]
        assert wait_for(lambda: t.cli("queue", "list").stdout.strip() == "Queue is empty")
        # no bounce was sent for the deleted message
        assert len(sink.messages) == 1
        assert t.messages("alice@example.org") == []
    finally:
        sink.close()

"""Submission (issue 6): ports submission_listen (STARTTLS) and
submissions_listen (implicit TLS) with AUTH required, sender checks on the
envelope and the From:/Sender: header, local delivery plus the outbound queue
for other domains, Message-ID/Date added, DSN parameters, and an open-relay
battery on every port. Clients: smtplib, raw lines, swaks, curl, nodemailer.

The queue is read from <data_dir>/queue/queue.db with sqlite3 (read-only);
dns_servers points at a dead port so no real DNS is ever asked."""
import base64
import json
import os
import re
import select
import signal
import shutil
import smtplib
import sqlite3
import ssl
import subprocess
import time

import pytest

from conftest import Lines

ALICE, ALICEPW = "alice@example.org", "alicepw"
BOB = "bob@example.org"
REMOTE = "carol@remote.test"
EXTRA = "dns_servers = 127.0.0.1:9\n"
HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")


@pytest.fixture
def sub(make_tern):
    t = make_tern(extra=EXTRA, submission=True, start=False)
    t.cli("alias", "add", "sales@example.org", ALICE, BOB)
    t.cli("alias", "add", "al@example.org", ALICE)
    t.start()
    return t


def ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def plain(user, pw):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode()).decode()


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def queue_rows(t):
    """[(message row dict, [rcpt row dicts])] from the queue database."""
    path = os.path.join(t.data, "queue", "queue.db")
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    db.row_factory = sqlite3.Row
    try:
        out = []
        for m in db.execute("SELECT * FROM messages ORDER BY arrival, id"):
            rc = [dict(r) for r in db.execute("SELECT * FROM rcpts WHERE msg = ? ORDER BY idx",
                                              (m["id"],))]
            out.append((dict(m), rc))
        return out
    finally:
        db.close()


def queue_file(t, m):
    with open(os.path.join(t.data, "queue", m["file"]), "rb") as f:
        return f.read()


def msg(frm=ALICE, to=REMOTE, subject="hi", extra="", body="Hello.\r\n"):
    return (f"From: Alice <{frm}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n{extra}\r\n{body}")


def login(c, user=ALICE, pw=ALICEPW):
    assert c.cmd("AUTH PLAIN " + plain(user, pw))[0] == 235


# ---- AUTH ------------------------------------------------------------------------


def test_ehlo_and_auth_required(sub, make_tern):
    c = Lines(sub.connect(sub.submission_port))
    assert c.reply()[0] == 220
    code, l = c.cmd("EHLO client.test")
    assert code == 250
    kw = [x[4:] for x in l[1:]]
    assert "AUTH PLAIN LOGIN SCRAM-SHA-256" in kw and "STARTTLS" in kw and "DSN" in kw
    assert c.cmd("MAIL FROM:<%s>" % ALICE) == (530, ["530 5.7.0 Authentication required"])
    # no open relay: nothing gets as far as RCPT without AUTH
    assert c.cmd("RCPT TO:<%s>" % REMOTE)[0] == 530
    assert c.cmd("DATA")[0] == 530
    assert c.cmd("VRFY alice")[0] == 530
    assert c.cmd("NOOP")[0] == 250
    assert c.cmd("RSET")[0] == 250
    # the MX port offers no AUTH and accepts no relaying
    m = Lines(sub.connect())
    assert m.reply()[0] == 220
    code, l = m.cmd("EHLO client.test")
    assert not any(x[4:].startswith("AUTH") for x in l) and "250 DSN" in l
    assert m.cmd("AUTH PLAIN " + plain(ALICE, ALICEPW))[0] == 502


def test_auth_exchanges_and_failures(sub):
    c = Lines(sub.connect(sub.submission_port))
    c.reply()
    assert c.cmd("AUTH PLAIN " + plain(ALICE, ALICEPW))[0] == 503  # EHLO first
    c.cmd("EHLO client.test")
    assert c.cmd("AUTH PLAIN " + plain(ALICE, "wrong")) == (535, ["535 5.7.8 Authentication credentials invalid"])
    assert c.cmd("AUTH PLAIN " + plain("nobody@example.org", "x"))[0] == 535
    assert c.cmd("AUTH PLAIN !!!!")[0] == 501
    assert c.cmd("AUTH CRAM-MD5")[0:1] == (504,)
    # challenge/response, "*" cancels with 501 5.0.0
    assert c.cmd("AUTH PLAIN") == (334, ["334 "])
    assert c.cmd("*") == (501, ["501 5.0.0 Authentication aborted"])
    assert c.cmd("AUTH LOGIN") == (334, ["334 " + b64("Username:")])
    assert c.cmd("%%%") [0] == 501  # not base64: 501 5.5.2
    assert c.cmd("AUTH LOGIN") [0] == 334
    assert c.cmd(b64(ALICE)) == (334, ["334 " + b64("Password:")])
    assert c.cmd(b64(ALICEPW)) == (235, ["235 2.7.0 Authentication successful"])
    assert c.cmd("AUTH PLAIN " + plain(ALICE, ALICEPW))[0] == 503  # once only
    assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250
    c2 = Lines(sub.connect(sub.submission_port))
    c2.reply()
    c2.cmd("EHLO client.test")
    assert c2.cmd("AUTH PLAIN =")[0] == 501  # "=": empty initial response, malformed for PLAIN
    assert c.cmd("QUIT")[0] == 221
    sub.wait_log(r"smtp .*(fail|denied)")


def test_scram_sha256_with_smtplib_auth_hook(sub):
    """SCRAM-SHA-256 (RFC 7677) by hand over smtplib's low-level docmd."""
    import hashlib
    import hmac
    s = smtplib.SMTP("127.0.0.1", sub.submission_port, timeout=10)
    s.ehlo("client.test")
    cnonce = "rOprNGfwEbeRWgbNEkqO"
    first_bare = "n=%s,r=%s" % (ALICE, cnonce)
    code, resp = s.docmd("AUTH", "SCRAM-SHA-256 " + b64("n,," + first_bare))
    assert code == 334
    server_first = base64.b64decode(resp).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    assert attrs["r"].startswith(cnonce)
    salted = hashlib.pbkdf2_hmac("sha256", ALICEPW.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    ckey = hmac.new(salted, b"Client Key", "sha256").digest()
    skey = hashlib.sha256(ckey).digest()
    final_bare = "c=biws,r=" + attrs["r"]
    authmsg = ",".join([first_bare, server_first, final_bare]).encode()
    sig = hmac.new(skey, authmsg, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(ckey, sig))
    code, resp = s.docmd(b64(final_bare + ",p=" + b64(proof)))
    assert code == 334
    v = base64.b64decode(resp).decode()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    assert v == "v=" + b64(hmac.new(server_key, authmsg, "sha256").digest())
    assert s.docmd("")[0] == 235
    assert s.mail(ALICE)[0] == 250
    s.quit()


# ---- sending: local and remote recipients -----------------------------------------


def test_starttls_local_and_remote_in_one_message(sub):
    s = smtplib.SMTP("127.0.0.1", sub.submission_port, timeout=10)
    s.starttls(context=ctx())
    s.login(ALICE, ALICEPW)
    s.sendmail(ALICE, [BOB, REMOTE, "dave@other.test"], msg(to=BOB, extra="Message-ID: <keep@x>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"))
    s.quit()
    local = sub.read_messages(BOB)
    assert len(local) == 1
    m = local[0]
    assert m.startswith(b"Return-Path: <alice@example.org>\nDelivered-To: bob@example.org\nReceived: from ")
    assert b"with ESMTPSA id " in m and b"(authenticated user alice@example.org)" in m
    assert m.count(b"Message-ID:") == 1 and b"Message-ID: <keep@x>" in m
    assert m.count(b"\nDate:") == 1
    q = queue_rows(sub)
    assert len(q) == 1
    qm, qr = q[0]
    assert qm["sender"] == ALICE and qm["submitter"] == ALICE
    assert [r["addr"] for r in qr] == [REMOTE, "dave@other.test"]
    assert all(r["state"] in ("queued", "deferred") for r in qr)
    body = queue_file(sub, qm)
    assert body.startswith(b"Received: from ") and b"Return-Path" not in body
    assert b"with ESMTPSA" in body and body.endswith(b"Hello.\n")
    sub.wait_log(r"smtp accepted .*user=alice@example\.org queued=[0-9a-f]{16}")


def test_implicit_tls_and_message_id_date_added(sub):
    s = smtplib.SMTP_SSL("127.0.0.1", sub.submissions_port, timeout=10, context=ctx())
    code, l = s.ehlo("client.test")
    assert b"STARTTLS" not in l and b"AUTH PLAIN LOGIN SCRAM-SHA-256" in l
    s.login(ALICE, ALICEPW)
    s.sendmail(ALICE, [BOB], "From: alice@example.org\r\nSubject: bare\r\n\r\nno id\r\n")
    s.quit()
    m = sub.read_messages(BOB)[0]
    assert re.search(rb"\nMessage-ID: <[0-9a-f]{32}@mx\.example\.org>\n", m), m[:600]
    assert re.search(rb"\nDate: \w{3}, \d+ \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\n", m)
    assert b"with ESMTPSA" in m


def test_header_only_message_and_bdat(sub):
    s = smtplib.SMTP("127.0.0.1", sub.submission_port, timeout=10)
    s.starttls(context=ctx())
    s.login(ALICE, ALICEPW)
    s.sendmail(ALICE, [BOB], "From: alice@example.org\r\nSubject: no body")
    s.quit()
    m = sub.read_messages(BOB)[0]
    assert b"Subject: no body" in m and b"Message-ID: <" in m
    # BDAT: the header may straddle chunks
    c = Lines(sub.connect(sub.submission_port))
    c.reply()
    c.cmd("EHLO x")
    login(c)
    assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250
    assert c.cmd("RCPT TO:<%s>" % BOB)[0] == 250
    part1, part2 = "From: al@example.org\r\nSub", "ject: chunks\r\n\r\nbody\r\n"
    c.send("BDAT %d\r\n%s" % (len(part1), part1))
    assert c.reply()[0] == 250
    c.send("BDAT %d LAST\r\n%s" % (len(part2), part2))
    assert c.reply()[0] == 250
    assert any(b"Subject: chunks\n\nbody\n" in x for x in sub.read_messages(BOB))


# ---- sender rules ------------------------------------------------------------------


def test_envelope_sender_rules(sub):
    c = Lines(sub.connect(sub.submission_port))
    c.reply()
    c.cmd("EHLO client.test")
    login(c)
    for bad in ("bob@example.org", "alice@example.net", "someone@remote.test",
                "alice@[127.0.0.1]", "\"alice\"@remote.test"):
        code, l = c.cmd("MAIL FROM:<%s>" % bad)
        assert code == 553 and "5.7.1" in l[0], (bad, l)
    # own address (any case), an alias of hers, a list alias including her, the null sender
    for good in ("alice@example.org", "ALICE@Example.Org", "al@example.org", "sales@example.org",
                 "\"alice\"@example.org", ""):
        assert c.cmd("MAIL FROM:<%s>" % good)[0] == 250, good
        assert c.cmd("RSET")[0] == 250


@pytest.mark.parametrize("hdr,ok", [
    ("From: Alice <alice@example.org>\r\n", True),
    ("From: al@example.org\r\n", True),
    ("From: \"Sales\" <sales@example.org>\r\n", True),
    ("From: alice@example.org, al@example.org\r\nSender: alice@example.org\r\n", True),
    ("From: Bob <bob@example.org>\r\n", False),
    ("From: Bob <bob@example.org>\r\nSender: alice@example.org\r\n", False),
    ("From: alice@example.org\r\nSender: bob@example.org\r\n", False),
    ("From: alice@example.org, bob@example.org\r\n", False),
    ("From: Alice <alice@remote.test>\r\n", False),
    ("From: undisclosed:;\r\n", False),
    ("Subject: no from\r\n", False),
    ("From: alice@example.org\r\nFrom: bob@example.org\r\n", False),
    ("From: alice@example.org (Alice A. Example)\r\n", True),
    ("From: \"bob@example.org\" <alice@example.org>\r\n", True),
    ("From: Team: alice@example.org, al@example.org;\r\n", True),
    # what a lenient parser stops before is what mail readers show:
    # "alice@example.org <bob@...>" is bob's address with alice as the name
    ("From: alice@example.org <bob@example.org>\r\n", False),
    ("From: Alice <alice@example.org> <bob@example.org>\r\n", False),
    ("From: alice@example.org bob@example.org\r\n", False),
    ("From: alice@example.org; bob@example.org\r\n", False),
    ("From: <alice@example.org\r\n", False),
    # the address parser kept 100 addresses: the 101st must not slip through
    ("From: " + "alice@example.org, " * 100 + "bob@example.org\r\n", False),
    ("From: " + "al@example.org, " * 99 + "alice@example.org\r\n", True),
])
def test_from_header_rules(sub, hdr, ok):
    s = smtplib.SMTP("127.0.0.1", sub.submission_port, timeout=10)
    s.login(ALICE, ALICEPW)  # loopback: plaintext allowed without TLS
    s.mail(ALICE)
    s.rcpt(BOB)
    code, text = s.data(hdr + "Subject: t\r\n\r\nbody\r\n")
    s.quit()
    if ok:
        assert code == 250, text
        assert len(sub.messages(BOB)) == 1
    else:
        assert code == 553 and text.startswith(b"5.7.1"), text
        assert sub.messages(BOB) == []
        assert queue_rows(sub) == []


@pytest.mark.parametrize("hdr", [
    # many readers (Python's email among them) end a line at a bare CR, so
    # they see "From: bob" first while a CRLF-only parser sees a Subject
    "Subject: hi\rFrom: bob@example.org\r\nFrom: alice@example.org\r\n",
    "From: alice@example.org\rFrom: bob@example.org\r\n",
    "From: alice@example.org\r\n\r\r\nFrom: bob@example.org\r\n",
])
def test_bare_cr_in_header_refused(sub, hdr):
    c = Lines(sub.connect(sub.submission_port))
    c.reply()
    c.cmd("EHLO client.test")
    login(c)
    assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250
    assert c.cmd("RCPT TO:<%s>" % BOB)[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(hdr + "\r\nbody\r\n.\r\n")
    code, l = c.reply()
    assert code == 554 and "5.6.0" in l[0], l
    assert sub.messages(BOB) == []
    # the session goes on
    assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250


@pytest.mark.slow
def test_enqueue_failure_leaves_no_local_half(sub):
    """Local copies and the queue entry succeed or fail together: when the
    queue cannot register the message (its database is locked past the busy
    timeout), the client gets 451 and retries, so a local copy left behind
    would be delivered twice."""
    path = os.path.join(sub.data, "queue", "queue.db")
    lock = sqlite3.connect(path, isolation_level=None, timeout=10)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        s = smtplib.SMTP("127.0.0.1", sub.submission_port, timeout=20)
        s.login(ALICE, ALICEPW)
        s.mail(ALICE)
        assert s.rcpt(BOB)[0] == 250 and s.rcpt(REMOTE)[0] == 250
        code, text = s.data(msg(to=BOB))
        assert code == 451, text
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert sub.messages(BOB) == []
    assert queue_rows(sub) == []
    # the retry delivers each half once
    assert s.sendmail(ALICE, [BOB, REMOTE], msg(to=BOB)) == {}
    s.quit()
    assert len(sub.messages(BOB)) == 1 and len(queue_rows(sub)) == 1


# ---- DSN parameters ------------------------------------------------------------------


def test_dsn_parameters_stored(sub):
    c = Lines(sub.connect(sub.submission_port))
    c.reply()
    c.cmd("EHLO client.test")
    login(c)
    assert c.cmd("MAIL FROM:<%s> RET=HDRS ENVID=QQ+2B314 AUTH=alice@example.org" % ALICE)[0] == 250
    assert c.cmd("RCPT TO:<%s> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;carol+2Bx@remote.test" % REMOTE)[0] == 250
    assert c.cmd("RCPT TO:<erin@remote.test> NOTIFY=NEVER")[0] == 250
    assert c.cmd("RCPT TO:<%s> NOTIFY=DELAY" % BOB)[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(msg().replace("\r\n", "\r\n") + ".\r\n")
    assert c.reply()[0] == 250
    (qm, qr), = queue_rows(sub)
    assert qm["ret"] == 2 and qm["envid"] == "QQ+314" and qm["submitter"] == ALICE
    assert qr[0]["addr"] == REMOTE and qr[0]["notify"] == 2 | 4
    assert qr[0]["orcpt"] == "rfc822;carol+x@remote.test"
    assert qr[1]["addr"] == "erin@remote.test" and qr[1]["notify"] == 1 and qr[1]["orcpt"] is None
    assert len(sub.messages(BOB)) == 1
    # syntax errors: 501 5.5.4
    for cmd in ("MAIL FROM:<%s> RET=ALL" % ALICE, "MAIL FROM:<%s> ENVID=a+zz" % ALICE,
                "MAIL FROM:<%s> RET=FULL RET=HDRS" % ALICE):
        assert c.cmd(cmd)[0] == 501, cmd
    assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250
    for cmd in ("NOTIFY=NEVER,SUCCESS", "NOTIFY=SOMETIMES", "NOTIFY=", "ORCPT=rfc822",
                "ORCPT=rfc822;a+0Ab", "NOTIFY=DELAY NOTIFY=DELAY"):
        code, l = c.cmd("RCPT TO:<%s> %s" % (REMOTE, cmd))
        assert code == 501 and "5.5.4" in l[0], (cmd, l)
    assert c.cmd("QUIT")[0] == 221


def test_dsn_accepted_on_mx_port(sub):
    s = smtplib.SMTP("127.0.0.1", sub.smtp_port, timeout=10)
    s.ehlo("client.test")
    assert s.has_extn("dsn")
    s.sendmail("x@remote.test", [BOB], "Subject: dsn\r\n\r\nhi\r\n", mail_options=["RET=FULL", "ENVID=abc"],
               rcpt_options=["NOTIFY=SUCCESS", "ORCPT=rfc822;bob@example.org"])
    s.quit()
    assert len(sub.messages(BOB)) == 1


# ---- open relay battery ----------------------------------------------------------------

RELAY_RCPTS = [
    "<@example.org:carol@remote.test>",        # source route via us
    "<@remote.test:carol@example.org>",
    "<carol%remote.test@example.org>",         # % hack
    "<remote.test!carol@example.org>",         # bang path
    "<\"carol@remote.test\"@example.org>",     # quoted local part
    "<\"carol%remote.test\"@example.org>",
    "<carol@[127.0.0.1]>",                     # IP literals
    "<carol@[IPv6:::1]>",
    "<carol@remote.test>",
    "<carol@remote.test.>",
    "<carol@example.org.remote.test>",
]


@pytest.mark.parametrize("port", ["smtp", "submission", "submissions"])
def test_open_relay_battery_unauthenticated(sub, port):
    sock = sub.connect(sub.ports[port])
    if port == "submissions":
        sock = ctx().wrap_socket(sock)
    c = Lines(sock)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO relay.test")[0] == 250
    code, l = c.cmd("MAIL FROM:<spammer@remote.test>")
    if port != "smtp":
        assert code == 530, l
        for r in RELAY_RCPTS:
            assert c.cmd("RCPT TO:%s" % r)[0] == 530
        assert c.cmd("AUTH PLAIN " + plain(ALICE, "guess"))[0] == 535
        assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 530
        return
    assert code == 250
    for r in RELAY_RCPTS:
        code, l = c.cmd("RCPT TO:%s" % r)
        assert code >= 500, (r, l)
    assert c.cmd("QUIT")[0] == 221
    assert queue_rows(sub) == []


@pytest.mark.parametrize("port", ["submission", "submissions"])
def test_open_relay_battery_authenticated_hacks(sub, port):
    """Even logged in, the hacks that reach a local domain match no account,
    and IP literals are refused; only plain remote domains are relayed."""
    sock = sub.connect(sub.ports[port])
    if port == "submissions":
        sock = ctx().wrap_socket(sock)
    c = Lines(sock)
    c.reply()
    c.cmd("EHLO relay.test")
    login(c)
    assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250
    for r in RELAY_RCPTS[2:8]:
        code, l = c.cmd("RCPT TO:%s" % r)
        assert code >= 500, (r, l)
    assert c.cmd("RCPT TO:<carol@remote.test>")[0] == 250
    assert c.cmd("QUIT")[0] == 221


# ---- other clients ---------------------------------------------------------------------


def test_swaks_starttls_and_tls_on_connect(sub):
    swaks = shutil.which("swaks")
    assert swaks, "swaks is needed (Debian package swaks)"
    for args in (["--port", str(sub.submission_port), "-tls"],
                 ["--port", str(sub.submissions_port), "--tls-on-connect"]):
        p = subprocess.run([swaks, "--server", "127.0.0.1", *args, "--auth", "PLAIN",
                            "--auth-user", ALICE, "--auth-password", ALICEPW,
                            "--from", ALICE, "--to", "%s,%s" % (BOB, REMOTE),
                            "--header", "From: alice@example.org", "--body", "via swaks"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "235 2.7.0" in p.stdout
    # a wrong sender with swaks: 553
    p = subprocess.run([swaks, "--server", "127.0.0.1", "--port", str(sub.submission_port), "-tls",
                        "--auth", "LOGIN", "--auth-user", ALICE, "--auth-password", ALICEPW,
                        "--from", BOB, "--to", REMOTE], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "553 5.7.1" in p.stdout
    assert len(sub.messages(BOB)) == 2 and len(queue_rows(sub)) == 2


def test_curl_smtp_ssl_reqd_and_smtps(sub, tmp_path):
    f = tmp_path / "mail.txt"
    f.write_bytes(msg(to=BOB).encode())
    for url, extra in (("smtp://127.0.0.1:%d" % sub.submission_port, ["--ssl-reqd"]),
                       ("smtps://127.0.0.1:%d" % sub.submissions_port, [])):
        p = subprocess.run(["curl", "-sS", "--max-time", "20", "-k", url, *extra,
                            "-u", "%s:%s" % (ALICE, ALICEPW), "--mail-from", ALICE,
                            "--mail-rcpt", BOB, "--mail-rcpt", REMOTE, "-T", str(f)],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
    assert len(sub.messages(BOB)) == 2
    assert len(queue_rows(sub)) == 2
    # without credentials curl is refused (530)
    p = subprocess.run(["curl", "-sS", "--max-time", "20", "-k",
                        "smtp://127.0.0.1:%d" % sub.submission_port, "--ssl-reqd",
                        "--mail-from", ALICE, "--mail-rcpt", REMOTE, "-T", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert len(queue_rows(sub)) == 2


def node_ready():
    return os.path.isfile(os.path.join(NODE_DIR, "node_modules", "nodemailer", "package.json"))


def test_nodemailer_587_and_465(sub):
    node = shutil.which("node")
    if not node:
        pytest.fail("node is needed (Debian package nodejs)")
    if not node_ready():
        p = subprocess.run(["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=NODE_DIR, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        if p.returncode != 0 or not node_ready():
            pytest.fail("`npm ci` in %s failed: %s" % (NODE_DIR, (p.stdout + p.stderr)[-2000:]))
    p = subprocess.run([node, os.path.join(NODE_DIR, "nodemailer_submit.js"), "127.0.0.1",
                        str(sub.submission_port), str(sub.submissions_port), ALICE, ALICEPW, BOB, REMOTE],
                       cwd=NODE_DIR, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    res = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    by = {r["case"]: r for r in res}
    assert by["587"]["ok"] and by["465"]["ok"], res
    assert by["badfrom"]["ok"] is False and by["badfrom"]["code"] == 553, res
    assert by["badpass"]["ok"] is False and by["badpass"]["code"] == 535, res
    msgs = sub.read_messages(BOB)
    assert len(msgs) == 2 and all(b"with ESMTPSA" in m and b"Message-ID: <" in m for m in msgs)
    assert len(queue_rows(sub)) == 2


@pytest.mark.parametrize("port", ["smtp", "submission"])
def test_notify_success_for_local_delivery(sub, port):
    """RFC 3461 5.2.2: a local final delivery with NOTIFY=SUCCESS queues a
    "delivered" DSN (null sender) to the envelope sender; the original is not
    kept in the queue."""
    s = smtplib.SMTP("127.0.0.1", sub.ports[port], timeout=10)
    s.ehlo("client.test")
    sender = "x@remote.test"
    if port == "submission":
        s.login(ALICE, ALICEPW)
        sender = ALICE
    s.sendmail(sender, [BOB, "alice@example.org"], msg(frm=ALICE, to=BOB, extra="Message-ID: <orig@x>\r\n"),
               mail_options=["ENVID=env1", "RET=HDRS"],
               rcpt_options=["NOTIFY=SUCCESS", "ORCPT=rfc822;bob@example.org"])
    s.quit()
    assert len(sub.messages(BOB)) == 1
    if port == "smtp":
        # remote sender: the DSN waits in the queue (dns_servers points nowhere)
        (qm, qr), = queue_rows(sub)
        assert qm["sender"] == "" and [r["addr"] for r in qr] == [sender]
        dsn = queue_file(sub, qm)
    else:
        # local sender: the scheduler delivers the DSN into alice's INBOX
        deadline = time.time() + 20
        while len(sub.messages(ALICE)) < 2 and time.time() < deadline:
            time.sleep(0.1)
        dsns = [m for m in sub.read_messages(ALICE) if b"report-type=delivery-status" in m]
        assert len(dsns) == 1, sub.read_messages(ALICE)
        dsn = dsns[0]
        assert b"Return-Path: <>" in dsn
        assert queue_rows(sub) == []
    assert b"report-type=delivery-status" in dsn
    assert dsn.count(b"Action: delivered") == 2, dsn.decode(errors="replace")
    assert b"Original-Envelope-Id: env1" in dsn
    assert re.search(rb"Original-Recipient: rfc822; ?bob@example\.org", dsn), dsn
    sub.wait_log(r"relay dsn=[0-9a-f]{16} queued for <[^>]*> action=delivered")
    # no NOTIFY, or a null sender: nothing queued
    s = smtplib.SMTP("127.0.0.1", sub.smtp_port, timeout=10)
    s.sendmail("", [BOB], "Subject: x\r\n\r\nx\r\n", rcpt_options=["NOTIFY=SUCCESS"])
    s.sendmail("y@remote.test", [BOB], "Subject: x\r\n\r\nx\r\n")
    s.quit()
    assert len(queue_rows(sub)) == (1 if port == "smtp" else 0)


def test_oversized_header_refused_permanently(sub):
    s = smtplib.SMTP("127.0.0.1", sub.submission_port, timeout=30)
    s.login(ALICE, ALICEPW)
    s.mail(ALICE)
    s.rcpt(BOB)
    big = "".join("X-Filler-%d: %s\r\n" % (i, "y" * 900) for i in range(300))
    code, text = s.data("From: alice@example.org\r\n" + big + "\r\nbody\r\n")
    assert code == 552 and text.startswith(b"5.3.4"), text
    s.quit()
    assert sub.messages(BOB) == []


def test_recipient_beyond_queue_limits_refused_at_rcpt(sub):
    c = Lines(sub.connect(sub.submission_port))
    c.reply()
    c.cmd("EHLO client.test")
    login(c)
    assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250
    long_rcpt = "a" * 300 + "@remote.test"
    code, l = c.cmd("RCPT TO:<%s>" % long_rcpt)
    assert code == 553 and "5.1.3" in l[0], l
    assert c.cmd("RCPT TO:<%s>" % REMOTE)[0] == 250
    assert c.cmd("QUIT")[0] == 221


def test_eightbit_content_marked_in_queue(sub):
    s = smtplib.SMTP("127.0.0.1", sub.submission_port, timeout=10)
    s.login(ALICE, ALICEPW)
    s.sendmail(ALICE, [REMOTE], "From: alice@example.org\r\nSubject: x\r\n\r\nGr\xfc\xdfe\r\n".encode("latin-1"))
    s.sendmail(ALICE, ["dave@remote.test"], "From: alice@example.org\r\nSubject: y\r\n\r\nplain\r\n")
    s.sendmail(ALICE, ["erin@remote.test"], "From: alice@example.org\r\nSubject: z\r\n\r\nplain\r\n",
               mail_options=["BODY=8BITMIME"])
    s.quit()
    rows = sorted(queue_rows(sub), key=lambda x: x[1][0]["addr"])
    assert [(r[1][0]["addr"], r[0]["eightbit"]) for r in rows] == [
        (REMOTE, 1), ("dave@remote.test", 0), ("erin@remote.test", 1)]


# ---- the queue database locked by another process ------------------------------
#
# The submission's queue registration runs on the relay's queue worker, not on
# the event loop: while a `tern queue` CLI (here: Python's sqlite3) holds the
# write lock, every other session is answered at once; the submitting client
# gets its 250 only once the queue entry is durable, or a 451 (4.3.0) when the
# 5 s busy timeout expires first (its local copies are then taken back).


@pytest.fixture
def busy(make_tern):
    t = make_tern(extra=EXTRA, submission=True, pop3=True, imap=True)
    time.sleep(0.5)  # the scheduler's start-up scan and notifications are done
    return t


def lock_queue_db(t):
    path = os.path.join(t.data, "queue", "queue.db")
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")  # the write lock, as a CLI's transaction has it
    return db


def timed(f):
    t0 = time.monotonic()
    f()
    return time.monotonic() - t0


def others_answer_quickly(t):
    """A new SMTP session (greeting, EHLO, NOOP), a POP3 and an IMAP session,
    each step answered in well under a second."""
    c = Lines(t.connect(t.smtp_port))
    assert timed(lambda: c.reply(timeout=1)) < 1
    assert timed(lambda: c.cmd("EHLO other.test", timeout=1)) < 1
    out = []
    assert timed(lambda: out.append(c.cmd("NOOP", timeout=1))) < 1
    assert out[0][0] == 250
    c.cmd("QUIT", timeout=1)
    p = Lines(t.connect(t.pop3_port))
    assert timed(lambda: out.append(p.line(timeout=1))) < 1
    assert out[-1].startswith("+OK"), out
    p.send("CAPA\r\n")
    assert timed(lambda: out.append(p.line(timeout=1))) < 1
    assert out[-1].startswith("+OK"), out
    p.sock.close()
    i = Lines(t.connect(t.imap_port))
    assert timed(lambda: out.append(i.line(timeout=1))) < 1
    assert out[-1].startswith("* OK"), out
    i.send("a1 NOOP\r\n")
    assert timed(lambda: out.append(i.line(timeout=1))) < 1
    assert out[-1].startswith("a1 OK"), out
    i.sock.close()


def start_submission(t, body_tag):
    c = Lines(t.connect(t.submission_port))
    c.reply()
    c.cmd("EHLO client.test")
    login(c)
    assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250
    assert c.cmd("RCPT TO:<%s>" % REMOTE)[0] == 250
    assert c.cmd("RCPT TO:<%s>" % BOB)[0] == 250
    assert c.cmd("DATA")[0] == 354
    return c, msg(subject=body_tag) + ".\r\n"


def no_answer_yet(c):
    return not c.buf and not select.select([c.sock], [], [], 0)[0]


def test_queue_lock_does_not_stall_the_loop(busy):
    c, data = start_submission(busy, "locked")
    db = lock_queue_db(busy)
    t0 = time.monotonic()
    try:
        c.send(data)
        time.sleep(0.3)  # committed; the registration now waits for the lock
        others_answer_quickly(busy)
        assert no_answer_yet(c)  # no 250 before the queue entry is durable
        time.sleep(max(0, 3 - (time.monotonic() - t0)))
        assert no_answer_yet(c)
        others_answer_quickly(busy)
    finally:
        db.rollback()
        db.close()
    code, l = c.reply(timeout=10)
    assert code == 250, l
    assert time.monotonic() - t0 >= 2.9
    (qm, qr), = queue_rows(busy)
    assert [r["addr"] for r in qr] == [REMOTE] and qm["sender"] == ALICE
    assert b"Subject: locked" in queue_file(busy, qm)
    assert len(busy.messages(BOB)) == 1
    assert c.cmd("QUIT")[0] == 221


@pytest.mark.slow
def test_queue_lock_past_busy_timeout_is_451(busy):
    c, data = start_submission(busy, "too long")
    db = lock_queue_db(busy)
    t0 = time.monotonic()
    try:
        c.send(data)
        time.sleep(0.3)
        others_answer_quickly(busy)
        # held until the answer comes: the busy timeout (5 s) expires first
        code, l = c.reply(timeout=20)
        waited = time.monotonic() - t0
        others_answer_quickly(busy)
    finally:
        db.rollback()
        db.close()
    assert code == 451 and l[0].startswith("451 4.3.0"), l
    assert waited >= 4.5, waited
    busy.wait_log(r"smtp enqueue failed")
    # nothing half-done: no queue entry, no spool file, no local copy
    assert queue_rows(busy) == []
    assert os.listdir(os.path.join(busy.data, "queue", "new")) == []
    assert busy.messages(BOB) == []
    # the client's retry, with the lock gone, is accepted
    assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250
    assert c.cmd("RCPT TO:<%s>" % REMOTE)[0] == 250
    assert c.cmd("RCPT TO:<%s>" % BOB)[0] == 250
    assert c.cmd("DATA")[0] == 354
    code, l = c.cmd(data[:-3].rstrip("\r\n") + "\r\n.", timeout=10)
    assert code == 250, l
    assert len(queue_rows(busy)) == 1 and len(busy.messages(BOB)) == 1
    assert c.cmd("QUIT")[0] == 221


def test_sigterm_while_registration_waits(busy):
    """SIGTERM while the queue registration waits for the lock: the server
    waits for it (the client gets its 250), then stops cleanly, and the
    message is in the queue after a restart."""
    c, data = start_submission(busy, "stopping")
    db = lock_queue_db(busy)
    try:
        c.send(data)
        time.sleep(0.5)
        busy.signal(signal.SIGTERM)
        time.sleep(1.0)
        assert busy.proc.poll() is None  # still waiting for the registration
        assert no_answer_yet(c)
    finally:
        db.rollback()
        db.close()
    code, l = c.reply(timeout=10)
    assert code == 250, l
    busy.proc.wait(30)
    assert busy.stop() == 0
    (qm, qr), = queue_rows(busy)
    assert [r["addr"] for r in qr] == [REMOTE]
    assert len(busy.messages(BOB)) == 1
    busy.start()
    assert len(queue_rows(busy)) == 1

"""POP3 (issue 4) against the real binary: the seed's transcript, the RFC 1939
states, sizes, UIDL stability, CAPA/STLS/pop3s, SASL (PLAIN, LOGIN,
SCRAM-SHA-256), APOP, [IN-USE], bad input, timeouts, and real clients
(poplib, curl, fetchmail) on a maildrop filled by SMTP or by Maildir files."""
import base64
import hashlib
import hmac
import itertools
import json
import os
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import TERN, Lines, Tern

SEED_DOMAIN = "dbc.mtview.ca.us"
MROSE = ("mrose@dbc.mtview.ca.us", "tanstaaf")
ALICE, ALICEPW = "alice@example.org", "alicepw"
BOB, BOBPW = "bob@example.org", "bobpw"


# ---- helpers -------------------------------------------------------------------


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class P3(Lines):
    """Raw POP3 line client: single-line and multi-line responses, raw bytes kept."""

    def cmd(self, text, timeout=10):
        self.send(text + "\r\n")
        return self.line(timeout)

    def multi_raw(self, timeout=10):
        """The data of a multi-line response exactly as sent (dot-stuffed,
        CRLF after every line), without the terminating ".\\r\\n"."""
        out = []
        while True:
            l = self.rawline(timeout)
            if l == b".":
                return b"".join(out)
            out.append(l + b"\r\n")

    def multi(self, timeout=10):
        """Lines of a multi-line response, dot-stuffing removed."""
        raw = self.multi_raw(timeout)
        return [l[1:] if l.startswith(".") else l for l in raw.decode().split("\r\n")[:-1]]

    def starttls(self):
        assert self.buf == b"", self.buf
        self.sock = tls_ctx().wrap_socket(self.sock, server_hostname="mx.example.org")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def unstuff(raw):
    """RFC 1939 3: remove the byte-stuffing of a multi-line response."""
    return b"".join(l[1:] if l.startswith(b".") else l for l in raw.splitlines(keepends=True))


@pytest.fixture
def clients():
    made = []

    def connect(t, port=None, tls=False, greet=True):
        port = port or (t.pop3s_port if tls else t.pop3_port)
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls:
            s = tls_ctx().wrap_socket(s, server_hostname="mx.example.org")
        c = P3(s)
        made.append(c)
        if greet:
            c.greeting = c.line()
            assert c.greeting.startswith("+OK "), c.greeting
        return c

    yield connect
    for c in made:
        c.close()


@pytest.fixture
def pop3(make_tern):
    """A started server with POP3 and POP3S listeners."""
    def make(extra="", **kw):
        return make_tern(extra, pop3=True, **kw)
    return make


@pytest.fixture
def tern3(pop3):
    return pop3()


def login(c, user=ALICE, pw=ALICEPW):
    assert c.cmd("USER " + user).startswith("+OK"), user
    r = c.cmd("PASS " + pw)
    assert r.startswith("+OK "), r
    return r


_seq = itertools.count(100000)


def put_message(t, addr, content, sub="new", sizes=True, flags=None, name=None):
    """Drop a message into an account's Maildir like a Maildir tool would:
    write in tmp/, rename into new/ (or cur/ with flags). Names carry
    increasing delivery times, so the POP3 order is the call order."""
    if isinstance(content, str):
        content = content.encode()
    md = t.maildir(addr)
    for d in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(md, d), exist_ok=True)
    if name is None:
        name = "%d.M%dP%dQ%d.testhost" % (int(time.time()), next(_seq), os.getpid(),
                                          next(_seq))
        if sizes:
            name += ",S=%d,W=%d" % (len(content), len(content) + content.count(b"\n"))
    if flags is not None:
        name += ":2," + flags
    tmp = os.path.join(md, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(content)
    os.rename(tmp, os.path.join(md, sub, name))
    return name


def all_files(t, addr):
    md = t.maildir(addr)
    return sorted(os.path.join(sub, f) for sub in ("new", "cur") for f in os.listdir(os.path.join(md, sub)))


def wire(content):
    """What RETR sends for stored content (before dot-stuffing)."""
    return content.replace(b"\n", b"\r\n")


def restart(t):
    t.stop()
    t.lines = []
    t.ports = {}
    t.start()


def msg(i, extra=""):
    return ("From: sender@remote.test\nTo: alice@example.org\nSubject: message %d\n"
            "Message-ID: <%d.pop3test@remote.test>\n\nbody of message %d\n%s" % (i, i, i, extra))


# ---- the seed transcript ---------------------------------------------------------

SEED_MSGS = [
    "From: Marshall Rose <mrose@dbc.mtview.ca.us>\r\nTo: mrose@dbc.mtview.ca.us\r\n"
    "Subject: first\r\nMessage-ID: <1.seed@dbc.mtview.ca.us>\r\n\r\nThe first message.\r\n"
    ".a line with a leading dot\r\n",
    "From: Marshall Rose <mrose@dbc.mtview.ca.us>\r\nTo: mrose@dbc.mtview.ca.us\r\n"
    "Subject: second\r\nMessage-ID: <2.seed@dbc.mtview.ca.us>\r\n\r\nThe second message,\r\n"
    "a little longer than the first one.\r\n/mtr\r\n",
]


def seed_server(pop3, extra=""):
    t = pop3(extra, domains=SEED_DOMAIN, users=(MROSE,))
    s = smtplib.SMTP("127.0.0.1", t.smtp_port, local_hostname="baiji.dbc.mtview.ca.us", timeout=10)
    for m in SEED_MSGS:
        s.sendmail("mrose@dbc.mtview.ca.us", ["mrose@dbc.mtview.ca.us"], m)
    s.quit()
    stored = t.read_messages(MROSE[0])
    assert len(stored) == 2
    stored.sort(key=lambda m: b"Subject: second" in m)
    return t, stored


def test_seed_transcript_raw_lines(pop3, clients):
    t, stored = seed_server(pop3)
    sizes = [len(wire(m)) for m in stored]
    c = clients(t)
    assert re.fullmatch(r"\+OK Tern POP3 server ready", c.greeting), c.greeting
    assert c.cmd("USER mrose@dbc.mtview.ca.us") == "+OK Send your password"
    assert c.cmd("PASS tanstaaf") == "+OK Logged in: maildrop has 2 messages (%d octets)" % sum(sizes)
    assert c.cmd("STAT") == "+OK 2 %d" % sum(sizes)
    assert c.cmd("LIST") == "+OK 2 messages (%d octets)" % sum(sizes)
    assert c.multi() == ["1 %d" % sizes[0], "2 %d" % sizes[1]]
    for i in (1, 2):
        assert c.cmd("RETR %d" % i) == "+OK %d octets" % sizes[i - 1]
        raw = c.multi_raw()
        assert unstuff(raw) == wire(stored[i - 1])
        assert SEED_MSGS[i - 1].replace("\r\n.a line", "\r\n..a line").encode() in raw
        assert c.cmd("DELE %d" % i) == "+OK Message %d deleted" % i
    assert c.cmd("QUIT") == "+OK mx.example.org POP3 server signing off (maildrop empty)"
    assert c.closed()
    assert t.messages(MROSE[0]) == [] and t.messages(MROSE[0], "cur") == []
    c = clients(t)
    login(c, *MROSE)
    assert c.cmd("STAT") == "+OK 0 0"
    assert c.cmd("LIST") == "+OK 0 messages (0 octets)"
    assert c.multi() == []
    assert c.cmd("QUIT").startswith("+OK")
    t.wait_log(r"pop3 update user=mrose@dbc\.mtview\.ca\.us deleted=2")
    t.wait_log(r"pop3 disconnect client=127\.0\.0\.1 user=mrose@dbc\.mtview\.ca\.us reason=[^=]+ "
               r"retrieved=2 deleted=2")


def test_seed_transcript_apop_poplib(pop3):
    """The seed's own example logs in with APOP and the secret "tanstaaf"."""
    t, stored = seed_server(pop3, "pop3_apop = yes\n")
    t.cli("user", "apop", MROSE[0], password=MROSE[1])
    p = poplib.POP3("127.0.0.1", t.pop3_port, timeout=10)
    assert re.fullmatch(rb"\+OK Tern POP3 server ready <\d+\.\d+@mx\.example\.org>", p.getwelcome())
    assert p.apop(MROSE[0], MROSE[1]).startswith(b"+OK ")
    n, octets = p.stat()
    assert n == 2 and octets == sum(len(wire(m)) for m in stored)
    _, listing, _ = p.list()
    assert [int(x.split()[1]) for x in listing] == [len(wire(m)) for m in stored]
    for i in (1, 2):
        resp, lines, o = p.retr(i)
        assert b"\r\n".join(lines) + b"\r\n" == wire(stored[i - 1])
        assert o == len(wire(stored[i - 1]))
        p.dele(i)
    assert p.quit() == b"+OK mx.example.org POP3 server signing off (maildrop empty)"
    p = poplib.POP3("127.0.0.1", t.pop3_port, timeout=10)
    p.user(MROSE[0])
    p.pass_(MROSE[1])
    assert p.stat() == (0, 0)
    p.quit()


# ---- states, DELE/RSET/NOOP, arguments --------------------------------------------


def test_commands_in_wrong_state(tern3, clients):
    put_message(tern3, ALICE, msg(1))
    c = clients(tern3)
    # TRANSACTION commands in AUTHORIZATION: -ERR, the session goes on
    for cmd in ("STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL"):
        r = c.cmd(cmd)
        assert r.startswith("-ERR "), (cmd, r)
    assert c.cmd("PASS alicepw").startswith("-ERR ")      # PASS needs USER first
    c.send("CAPA\r\n")
    assert c.line().startswith("+OK")
    assert "UIDL" in c.multi()
    c2 = clients(tern3)
    login(c2)
    # AUTHORIZATION commands in TRANSACTION
    for cmd in ("USER alice@example.org", "PASS alicepw", "APOP alice@example.org " + "0" * 32,
                "AUTH PLAIN", "STLS"):
        r = c2.cmd(cmd)
        assert r.startswith("-ERR "), (cmd, r)
    assert c2.cmd("STAT").startswith("+OK 1 ")
    assert c2.cmd("FROB").startswith("-ERR ")
    assert c2.cmd("NOOP") == "+OK"
    assert c2.cmd("QUIT").startswith("+OK")
    # QUIT in AUTHORIZATION: no UPDATE state, nothing touched
    assert c.cmd("QUIT") == "+OK mx.example.org POP3 server signing off"
    assert c.closed()
    assert len(tern3.messages(ALICE)) == 1


def test_commands_are_case_insensitive(tern3, clients):
    put_message(tern3, ALICE, msg(1))
    c = clients(tern3)
    assert c.cmd("user alice@example.org").startswith("+OK")
    assert c.cmd("pAsS alicepw").startswith("+OK")
    assert c.cmd("stat").startswith("+OK 1 ")


def test_dele_takes_effect_only_at_quit(tern3, clients):
    names = [put_message(tern3, ALICE, msg(i)) for i in range(1, 4)]
    c = clients(tern3)
    login(c)
    assert c.cmd("DELE 2") == "+OK Message 2 deleted"
    assert c.cmd("DELE 2").startswith("-ERR ")             # already deleted
    assert c.cmd("RETR 2").startswith("-ERR ")
    assert c.cmd("LIST 2").startswith("-ERR ")
    assert c.cmd("UIDL 2").startswith("-ERR ")
    assert c.cmd("TOP 2 0").startswith("-ERR ")
    st = c.cmd("STAT").split()
    assert st[1] == "2"
    assert c.cmd("LIST").startswith("+OK 2 messages")
    assert [l.split()[0] for l in c.multi()] == ["1", "3"]
    c.send("UIDL\r\n")
    c.line()
    assert [l.split()[0] for l in c.multi()] == ["1", "3"]
    # still on disk while the session lasts
    assert len(tern3.messages(ALICE)) == 3
    # a dropped connection deletes nothing
    c.close()
    tern3.wait_log(r"pop3 disconnect client=127\.0\.0\.1 user=alice@example\.org .*deleted=0")
    assert len(tern3.messages(ALICE)) == 3
    # the lock was released with the connection; QUIT commits exactly DELE 2
    c = clients(tern3)
    login(c)
    assert c.cmd("STAT").startswith("+OK 3 ")
    c.cmd("DELE 2")
    assert c.cmd("QUIT") == "+OK mx.example.org POP3 server signing off (2 messages left)"
    assert c.closed()
    left = [os.path.basename(p) for p in tern3.messages(ALICE)]
    assert left == sorted([names[0], names[2]])


def test_rset_and_noop(tern3, clients):
    for i in range(1, 4):
        put_message(tern3, ALICE, msg(i))
    c = clients(tern3)
    login(c)
    stat = c.cmd("STAT")
    c.cmd("DELE 1")
    c.cmd("DELE 3")
    assert c.cmd("STAT").startswith("+OK 1 ")
    assert c.cmd("NOOP") == "+OK"
    r = c.cmd("RSET")
    assert r.startswith("+OK Maildrop has 3 messages"), r
    assert c.cmd("STAT") == stat
    assert c.cmd("RETR 1").startswith("+OK")
    c.multi()
    assert c.cmd("QUIT").endswith("(3 messages left)")
    assert len(tern3.messages(ALICE)) == 3


def test_list_uidl_numbers(tern3, clients):
    for i in range(1, 3):
        put_message(tern3, ALICE, msg(i))
    c = clients(tern3)
    login(c)
    c.send("LIST\r\n")
    c.line()
    listing = c.multi()
    c.send("UIDL\r\n")
    c.line()
    uidls = c.multi()
    assert c.cmd("LIST 1") == "+OK " + listing[0]
    assert c.cmd("LIST 2") == "+OK " + listing[1]
    assert c.cmd("UIDL 2") == "+OK " + uidls[1]
    assert c.cmd("LIST 002") == "+OK " + listing[1]
    # no such message: -ERR, not counted as a protocol error
    for bad in ("LIST 3", "LIST 0", "UIDL 3", "UIDL 0", "RETR 3", "DELE 0", "TOP 3 1",
                "LIST 4294967296", "RETR 99999999999999999999999"):
        r = c.cmd(bad)
        assert r.startswith("-ERR "), (bad, r)
    assert c.cmd("NOOP") == "+OK"
    c.cmd("QUIT")
    c = clients(tern3)
    login(c)
    # bad syntax: -ERR with a reason, the session goes on (fewer than the error limit)
    for bad in ("LIST -1", "LIST abc", "LIST 1 2", "UIDL +1", "RETR", "DELE", "TOP 1", "TOP 1 -1",
                "TOP 1 x"):
        r = c.cmd(bad)
        assert r.startswith("-ERR "), (bad, r)
        assert len(r) > 5
    assert c.cmd("STAT").startswith("+OK 2 ")
    assert c.cmd("QUIT").startswith("+OK")
    assert len(tern3.messages(ALICE)) == 2


def test_top_and_dot_stuffing(tern3, clients):
    content = (b"Subject: dots\nX-Other: y\n\n.first body line\nsecond\n..third\n.\nfifth\n")
    put_message(tern3, ALICE, content)
    c = clients(tern3)
    login(c)
    assert c.cmd("TOP 1 0") == "+OK Top of message follows"
    assert c.multi_raw() == b"Subject: dots\r\nX-Other: y\r\n\r\n"
    assert c.cmd("TOP 1 2").startswith("+OK")
    assert c.multi_raw() == b"Subject: dots\r\nX-Other: y\r\n\r\n..first body line\r\nsecond\r\n"
    assert c.cmd("TOP 1 4").startswith("+OK")
    raw = c.multi_raw()
    assert raw.endswith(b"second\r\n...third\r\n..\r\n")
    assert c.cmd("TOP 1 1000").startswith("+OK")
    assert unstuff(c.multi_raw()) == wire(content)
    assert c.cmd("RETR 1").startswith("+OK")
    raw = c.multi_raw()
    assert raw == (b"Subject: dots\r\nX-Other: y\r\n\r\n..first body line\r\nsecond\r\n"
                   b"...third\r\n..\r\nfifth\r\n")
    # poplib agrees
    c.cmd("QUIT")
    p = poplib.POP3("127.0.0.1", tern3.pop3_port, timeout=10)
    p.user(ALICE)
    p.pass_(ALICEPW)
    _, lines, _ = p.top(1, 2)
    assert lines == [b"Subject: dots", b"X-Other: y", b"", b".first body line", b"second"]
    p.quit()


def test_sizes_are_exact_wire_octets(tern3, clients):
    contents = [
        b"Subject: plain\n\nhello\n",
        b"Subject: no final newline\n\nlast line without LF",
        b"Subject: dots\n\n.\n..\n...x\n.\n",
        b"Subject: long\n\n" + (b"x" * 998 + b"\n") * 200,
        b"Subject: big\n\n" + b"".join(b"%06d .line\n" % i for i in range(20000)),
        b"",                                              # an empty file
        b"Subject: blank lines\n\n\n\n\n",
        "Subject: utf-8 \u00e4\u00f6\u00fc\n\n\u00df\n".encode(),
    ]
    for i, m in enumerate(contents):
        # half with W= in the name (trusted), half without (computed by reading)
        put_message(tern3, ALICE, m, sizes=i % 2 == 0)
    c = clients(tern3)
    login(c)
    total = sum(len(wire(m)) for m in contents)
    assert c.cmd("STAT") == "+OK %d %d" % (len(contents), total)
    c.send("LIST\r\n")
    c.line()
    listed = [int(l.split()[1]) for l in c.multi()]
    assert listed == [len(wire(m)) for m in contents]
    for i, m in enumerate(contents, 1):
        assert c.cmd("RETR %d" % i) == "+OK %d octets" % listed[i - 1]
        raw = c.multi_raw(timeout=30)
        body = unstuff(raw)
        if m.endswith(b"\n") or m == b"":
            assert body == wire(m), i
        else:
            # a final line without LF is ended with CRLF before the "."; the
            # CRLF is framing, not message content
            assert body == wire(m) + b"\r\n", i
        assert len(wire(m)) == listed[i - 1]
        # raw octets: the listed size plus one per stuffed line
        stuffed = sum(1 for l in wire(m).split(b"\r\n") if l.startswith(b"."))
        assert len(raw) - len(body) == stuffed
    c.cmd("QUIT")


def test_crlf_stored_message(tern3, clients):
    """A Maildir tool may store CRLF; the listed size must still match RETR."""
    m = b"Subject: crlf\r\n\r\nline\r\n"
    put_message(tern3, ALICE, m, sizes=False)
    c = clients(tern3)
    login(c)
    size = int(c.cmd("LIST 1").split()[2])
    assert c.cmd("RETR 1").startswith("+OK")
    assert len(unstuff(c.multi_raw())) == size
    # TOP finds the end of the header (a line with just the stored CR)
    assert c.cmd("TOP 1 0").startswith("+OK")
    assert c.multi_raw() == b"Subject: crlf\r\r\n\r\r\n"


def test_smtp_delivery_retrieved_byte_exact(tern3, clients):
    body = ("Subject: exact\r\nMessage-ID: <exact@remote.test>\r\n\r\nline one\r\n.dot line\r\n"
            "..two dots\r\n\r\ntrailing spaces   \r\n\ttab\r\nlast\r\n")
    s = smtplib.SMTP("127.0.0.1", tern3.smtp_port, timeout=10)
    s.sendmail("x@remote.test", [ALICE], body)
    s.quit()
    stored = tern3.read_messages(ALICE)[0]
    assert b"\r" not in stored
    c = clients(tern3)
    login(c)
    assert c.cmd("RETR 1").startswith("+OK %d octets" % len(wire(stored)))
    got = unstuff(c.multi_raw())
    assert got == wire(stored)
    assert got.endswith(body.encode())
    assert c.cmd("QUIT").startswith("+OK")


# ---- UIDL ------------------------------------------------------------------------


def uidl_map(c):
    c.send("UIDL\r\n")
    assert c.line().startswith("+OK")
    return [l.split(" ", 1)[1] for l in c.multi()]


def test_uidl_stable_across_sessions_restart_and_imap_moves(tern3, clients):
    t = tern3
    names = [put_message(t, ALICE, msg(i)) for i in range(5)]
    names.append(put_message(t, ALICE, msg(5), name="odd name with spaces"))
    names.append(put_message(t, ALICE, msg(6), name="x" * 90))          # too long for a UIDL
    c = clients(t)
    login(c)
    first = uidl_map(c)
    ret1 = {}
    for i in range(1, 8):
        c.cmd("RETR %d" % i)
        ret1[first[i - 1]] = unstuff(c.multi_raw())
    c.cmd("QUIT")
    assert len(first) == 7 and len(set(first)) == 7
    for u in first:
        assert 1 <= len(u) <= 70 and all(0x21 <= ord(ch) <= 0x7E for ch in u), u
    # another session: the same
    c = clients(t)
    login(c)
    assert uidl_map(c) == first
    c.cmd("QUIT")
    # a restart: the same
    restart(t)
    c = clients(t)
    login(c)
    assert uidl_map(c) == first
    c.cmd("QUIT")
    # an IMAP server (or any Maildir tool) moves messages to cur/ with flags and
    # rewrites the size fields: the same UIDs and sizes, the content still there
    md = t.maildir(ALICE)
    os.rename(os.path.join(md, "new", names[0]), os.path.join(md, "cur", names[0] + ":2,S"))
    os.rename(os.path.join(md, "new", names[1]), os.path.join(md, "cur", names[1] + ":2,FRS"))
    base2 = names[2].split(",")[0]
    os.rename(os.path.join(md, "new", names[2]), os.path.join(md, "cur", base2 + ":2,"))
    os.rename(os.path.join(md, "new", names[5]), os.path.join(md, "cur", names[5] + ":2,T"))
    c = clients(t)
    login(c)
    assert uidl_map(c) == first
    for i in range(1, 8):
        c.cmd("RETR %d" % i)
        assert unstuff(c.multi_raw()) == ret1[first[i - 1]]
    # moved while the session is open (IMAP sets \Seen): RETR, UIDL n and DELE still work
    os.rename(os.path.join(md, "new", names[3]), os.path.join(md, "cur", names[3] + ":2,S"))
    assert c.cmd("UIDL 4") == "+OK 4 " + first[3]
    assert c.cmd("RETR 4").startswith("+OK")
    assert unstuff(c.multi_raw()) == ret1[first[3]]
    assert c.cmd("DELE 4").startswith("+OK")
    assert c.cmd("QUIT").startswith("+OK")
    files = all_files(t, ALICE)
    assert len(files) == 6 and not any(names[3] in f for f in files)
    c = clients(t)
    login(c)
    assert uidl_map(c) == first[:3] + first[4:]


def test_message_vanishing_during_session(tern3, clients):
    """Another program (IMAP expunge) removes a listed message: -ERR, no crash,
    the session goes on, and QUIT neither loses nor duplicates anything."""
    names = [put_message(tern3, ALICE, msg(i)) for i in range(3)]
    c = clients(tern3)
    login(c)
    os.unlink(os.path.join(tern3.maildir(ALICE), "new", names[1]))
    later = put_message(tern3, ALICE, msg(9))   # delivered during the session
    r = c.cmd("RETR 2")
    assert r.startswith("-ERR"), r
    assert c.cmd("RETR 1").startswith("+OK")
    c.multi()
    assert c.cmd("STAT").startswith("+OK 3 ")   # the session's snapshot
    c.cmd("DELE 1")
    c.cmd("DELE 2")
    assert c.cmd("QUIT").startswith("+OK")
    left = [os.path.basename(p) for p in tern3.messages(ALICE)]
    assert left == sorted([names[2], later])


def test_only_maildir_messages_are_listed(tern3, clients):
    """tmp/ files (a delivery in progress), dot files, directories and symlinks
    (to a file outside the Maildir) are not messages."""
    md = tern3.maildir(ALICE)
    put_message(tern3, ALICE, msg(1))
    with open(os.path.join(md, "tmp", "123.M1P1.inprogress"), "w") as f:
        f.write("Subject: half written\n")
    with open(os.path.join(md, "new", ".hidden"), "w") as f:
        f.write("Subject: hidden\n")
    os.mkdir(os.path.join(md, "cur", "124.M1P1.adir"))
    secret = os.path.join(tern3.dir, "secret.txt")
    with open(secret, "w") as f:
        f.write("not mail\n")
    os.symlink(secret, os.path.join(md, "new", "125.M1P1.link"))
    c = clients(tern3)
    login(c)
    assert c.cmd("STAT").startswith("+OK 1 ")
    assert c.cmd("RETR 1").startswith("+OK")
    assert b"Subject: message 1" in c.multi_raw()


# ---- CAPA, STLS, pop3s -------------------------------------------------------------


def capa(c):
    r = c.cmd("CAPA")
    assert r.startswith("+OK"), r
    return c.multi()


ALWAYS = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER"]


def test_capa_plaintext_stls_and_pop3s(tern3, clients):
    c = clients(tern3)
    caps = capa(c)
    for k in ALWAYS + ["USER", "STLS", "SASL PLAIN LOGIN SCRAM-SHA-256"]:
        assert k in caps, (k, caps)
    assert [x for x in caps if x.startswith("IMPLEMENTATION ")] == ["IMPLEMENTATION Tern"]
    assert c.cmd("STLS") == "+OK Begin TLS negotiation"
    c.starttls()
    caps2 = capa(c)
    assert "STLS" not in caps2
    for k in ALWAYS + ["USER", "SASL PLAIN LOGIN SCRAM-SHA-256"]:
        assert k in caps2
    assert c.cmd("STLS").startswith("-ERR ")
    login(c)
    # CAPA in TRANSACTION too (RFC 2449 5)
    assert capa(c) == caps2
    assert c.cmd("QUIT").startswith("+OK")
    tern3.wait_log(r"pop3 tls version=TLSv1\.[23]")
    # pop3s: implicit TLS, no STLS
    s = clients(tern3, tls=True)
    assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
    caps3 = capa(s)
    assert "STLS" not in caps3 and "USER" in caps3
    assert s.cmd("STLS").startswith("-ERR ")
    login(s)
    assert s.cmd("STAT") == "+OK 0 0"


def test_stls_forgets_user_and_poplib_stls(tern3, clients):
    put_message(tern3, ALICE, msg(1))
    c = clients(tern3)
    assert c.cmd("USER " + ALICE).startswith("+OK")
    assert c.cmd("STLS").startswith("+OK")
    c.starttls()
    assert c.cmd("PASS " + ALICEPW).startswith("-ERR ")   # RFC 2595 4: USER forgotten
    login(c)
    c.cmd("QUIT")
    p = poplib.POP3("127.0.0.1", tern3.pop3_port, timeout=10)
    assert "STLS" in p.capa()
    p.stls(context=tls_ctx())
    assert "STLS" not in p.capa()
    p.user(ALICE)
    p.pass_(ALICEPW)
    assert p.stat()[0] == 1
    p.quit()
    p = poplib.POP3_SSL("127.0.0.1", tern3.pop3s_port, context=tls_ctx(), timeout=10)
    p.user(ALICE)
    p.pass_(ALICEPW)
    _, lines, _ = p.retr(1)
    assert b"Subject: message 1" in lines
    p.quit()


def test_stls_command_injection(tern3, clients):
    """Commands pipelined after STLS in plaintext must be discarded (RFC 2595 4)."""
    c = clients(tern3)
    c.send("STLS\r\nCAPA\r\nUSER mallory@example.org\r\n")
    assert c.line() == "+OK Begin TLS negotiation"
    time.sleep(0.2)
    c.sock.settimeout(0.3)
    try:
        extra = c.sock.recv(4096)
    except socket.timeout:
        extra = b""
    assert c.buf == b"" and extra == b"", "answered injected plaintext commands: %r" % extra
    c.starttls()
    # the first answer under TLS is to our command, and there is only one
    assert c.cmd("PASS x").startswith("-ERR ")       # the injected USER did not happen
    caps = capa(c)
    assert "STLS" not in caps
    assert c.cmd("QUIT") == "+OK mx.example.org POP3 server signing off"


def netns_probe(t, allow):
    """Run tern and a client inside a private network namespace where the
    client's address is 10.9.9.1 on lo: not a loopback address, so the
    plaintext rule applies. Returns the client's observations."""
    if not shutil.which("unshare"):
        pytest.skip("unshare not available")
    with open(t.conf) as f:
        conf = f.read()
    conf = conf.replace("127.0.0.1:0", "10.9.9.1:0") + f"allow_plaintext_auth = {allow}\n"
    ns_conf = os.path.join(t.dir, "netns.conf")
    with open(ns_conf, "w") as f:
        f.write(conf)
    probe = r'''
import json, re, socket, ssl, subprocess, sys, time
p = subprocess.Popen([sys.argv[1], "serve", "-c", sys.argv[2]], stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
ports = {}
log = []
for line in p.stdout:
    log.append(line)
    m = re.search(r"listening (\w+) \S+:(\d+)$", line.strip())
    if m:
        ports[m.group(1)] = int(m.group(2))
    if "tern started" in line:
        break
out = {}
def session(port, tls, cmds, stls=False):
    s = socket.create_connection(("10.9.9.1", port), timeout=10)
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    if tls:
        s = ctx.wrap_socket(s)
    f = s.makefile("rb")
    res = [f.readline().decode().rstrip()]
    if stls:
        s.sendall(b"STLS\r\n"); res.append(f.readline().decode().rstrip())
        s = ctx.wrap_socket(s); f = s.makefile("rb")
    for c in cmds:
        s.sendall(c.encode() + b"\r\n")
        r = f.readline().decode().rstrip()
        if c == "CAPA" and r.startswith("+OK"):
            lines = []
            while True:
                l = f.readline().decode().rstrip()
                if l == ".":
                    break
                lines.append(l)
            r = lines
        res.append(r)
    s.close()
    return res
cmds = ["CAPA", "USER alice@example.org", "AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlcHc=",
        "AUTH LOGIN", "*", "USER alice@example.org", "PASS alicepw", "QUIT"]
out["plain"] = session(ports["pop3"], False, cmds)
out["stls"] = session(ports["pop3"], False, cmds, stls=True)
out["pop3s"] = session(ports["pop3s"], True, cmds)
p.terminate()
log += p.stdout.readlines()
p.wait(20)
out["log"] = "".join(log)
print(json.dumps(out))
'''
    sh = "ip link set lo up && ip addr add 10.9.9.1/32 dev lo && exec python3 -c \"$PROBE\" \"$@\""
    r = subprocess.run(["unshare", "-rn", "sh", "-c", sh, "sh", TERN, ns_conf],
                       env=dict(os.environ, PROBE=probe), capture_output=True, text=True,
                       timeout=60, cwd=t.dir)
    if r.returncode != 0 and "unshare" in r.stderr and "Operation not permitted" in r.stderr:
        pytest.skip("no unprivileged network namespaces here: " + r.stderr.strip())
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    log = out["log"]
    for bad in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer"):
        assert bad not in log, log[-4000:]
    assert "client=10.9.9.1" in log
    return out


def test_plaintext_auth_refused_from_non_loopback(pop3):
    t = pop3(start=False)
    out = netns_probe(t, "no")
    greet, caps, user, plain, login_, star, user2, pw, quit = out["plain"]
    assert "USER" not in caps and "STLS" in caps
    assert [x for x in caps if x.startswith("SASL")] == ["SASL SCRAM-SHA-256"], caps
    assert user.startswith("-ERR [AUTH] ")
    assert plain.startswith("-ERR [AUTH] ")
    assert login_.startswith("-ERR")
    assert pw.startswith("-ERR"), "a password was accepted in plaintext"
    # after STLS and on pop3s everything is allowed
    for k in ("stls", "pop3s"):
        res = out[k]
        if k == "stls":
            assert res[1].startswith("+OK")
            res = res[:1] + res[2:]
        greet, caps, user, plain, login_, star, user2, pw, quit = res
        assert "USER" in caps and "STLS" not in caps, (k, caps)
        assert "SASL PLAIN LOGIN SCRAM-SHA-256" in caps
        assert user.startswith("+OK")
        assert plain.startswith("+OK"), (k, plain)
        # now in TRANSACTION: the rest are wrong-state errors until QUIT
        assert quit.startswith("+OK")


def test_allow_plaintext_auth_from_non_loopback(pop3):
    t = pop3(start=False)
    out = netns_probe(t, "yes")
    greet, caps, user, plain, login_, star, user2, pw, quit = out["plain"]
    assert "USER" in caps and "STLS" in caps
    assert "SASL PLAIN LOGIN SCRAM-SHA-256" in caps
    assert user.startswith("+OK") and plain.startswith("+OK"), out["plain"]


# ---- SASL and APOP -------------------------------------------------------------------


def b64(b):
    if isinstance(b, str):
        b = b.encode()
    return base64.b64encode(b).decode()


def challenge(c):
    l = c.line()
    assert l.startswith("+ ") or l == "+", l
    return base64.b64decode(l[2:])


def test_auth_plain_with_initial_response(tern3, clients):
    c = clients(tern3)
    assert c.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (ALICE, ALICEPW))).startswith("+OK Logged in")
    assert c.cmd("STAT") == "+OK 0 0"
    c.cmd("QUIT")
    # authzid equal to authcid is fine
    c = clients(tern3)
    assert c.cmd("AUTH PLAIN " + b64("%s\0%s\0%s" % (ALICE, ALICE, ALICEPW))).startswith("+OK")
    c.cmd("QUIT")
    # without initial response: an empty challenge first
    c = clients(tern3)
    c.send("AUTH PLAIN\r\n")
    assert c.line() in ("+ ", "+")
    assert c.cmd(b64("\0%s\0%s" % (BOB, BOBPW))).startswith("+OK")
    c.cmd("QUIT")


def test_auth_plain_failures(tern3, clients):
    c = clients(tern3)
    r = c.cmd("AUTH PLAIN " + b64("\0%s\0wrong" % ALICE))
    assert r.startswith("-ERR [AUTH] "), r
    # authorization identity of somebody else: refused
    r = c.cmd("AUTH PLAIN " + b64("%s\0%s\0%s" % (BOB, ALICE, ALICEPW)))
    assert r.startswith("-ERR"), r
    c2 = clients(tern3)
    assert c2.cmd("AUTH PLAIN !!!notbase64").startswith("-ERR ")
    assert c2.cmd("AUTH FROB").startswith("-ERR ")
    c2.send("AUTH PLAIN\r\n")
    c2.line()
    assert c2.cmd("*").startswith("-ERR ")                   # cancelled (RFC 5034 4)
    c2.send("AUTH\r\n")                                       # RFC 1734 listing
    assert c2.line().startswith("+OK")
    assert c2.multi() == ["PLAIN", "LOGIN", "SCRAM-SHA-256"]
    assert c2.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (ALICE, ALICEPW))).startswith("+OK")


def test_auth_login(tern3, clients):
    c = clients(tern3)
    c.send("AUTH LOGIN\r\n")
    assert challenge(c).lower().startswith(b"user")
    c.send(b64(ALICE) + "\r\n")
    assert challenge(c).lower().startswith(b"pass")
    assert c.cmd(b64(ALICEPW)).startswith("+OK Logged in")
    c.cmd("QUIT")
    # with the user name as initial response
    c = clients(tern3)
    c.send("AUTH LOGIN " + b64(BOB) + "\r\n")
    assert challenge(c).lower().startswith(b"pass")
    assert c.cmd(b64(BOBPW)).startswith("+OK")
    c.cmd("QUIT")
    c = clients(tern3)
    c.send("AUTH LOGIN " + b64(BOB) + "\r\n")
    challenge(c)
    assert c.cmd(b64("nope")).startswith("-ERR [AUTH] ")


def scram_login(c, user, pw, initial=True, tamper=False):
    """RFC 5802 / RFC 7677 client side. Returns the final server line."""
    cnonce = b64(os.urandom(18))
    first_bare = "n=%s,r=%s" % (user.replace("=", "=3D").replace(",", "=2C"), cnonce)
    gs2 = "n,,"
    if initial:
        c.send("AUTH SCRAM-SHA-256 %s\r\n" % b64(gs2 + first_bare))
    else:
        c.send("AUTH SCRAM-SHA-256\r\n")
        assert c.line() in ("+ ", "+")
        c.send(b64(gs2 + first_bare) + "\r\n")
    l = c.line()
    if not l.startswith("+ "):
        return l
    server_first = base64.b64decode(l[2:]).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    assert attrs["r"].startswith(cnonce) and len(attrs["r"]) > len(cnonce)
    salted = hashlib.pbkdf2_hmac("sha256", pw.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    without_proof = "c=%s,r=%s" % (b64(gs2), attrs["r"])
    auth_msg = ",".join((first_bare, server_first, without_proof)).encode()
    sig = hmac.new(stored_key, auth_msg, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    if tamper:
        proof = bytes([proof[0] ^ 1]) + proof[1:]
    c.send(b64(without_proof + ",p=" + b64(proof)) + "\r\n")
    l = c.line()
    if not l.startswith("+ "):
        return l
    server_final = base64.b64decode(l[2:]).decode()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    expect = hmac.new(server_key, auth_msg, hashlib.sha256).digest()
    assert server_final == "v=" + b64(expect), "the server proved it knows the password"
    return c.cmd("")


def test_auth_scram_sha256(tern3, clients):
    put_message(tern3, ALICE, msg(1))
    c = clients(tern3)
    r = scram_login(c, ALICE, ALICEPW)
    assert r.startswith("+OK Logged in: maildrop has 1 message"), r
    assert c.cmd("STAT").startswith("+OK 1 ")
    c.cmd("QUIT")
    c = clients(tern3)
    assert scram_login(c, BOB, BOBPW, initial=False).startswith("+OK")
    c.cmd("QUIT")
    c = clients(tern3)
    assert scram_login(c, ALICE, "wrong").startswith("-ERR [AUTH] ")
    assert scram_login(c, ALICE, ALICEPW, tamper=True).startswith("-ERR [AUTH] ")
    c = clients(tern3)
    r = scram_login(c, "nobody@example.org", "x")
    assert r.startswith("-ERR [AUTH] "), r
    tern3.wait_log(r"pop3 (error|login failed).*")


def apop_digest(greeting, secret):
    ts = re.search(r"<[^>]*>", greeting).group(0)
    return hashlib.md5((ts + secret).encode()).hexdigest()


def test_apop(pop3, clients):
    t = pop3("pop3_apop = yes\n")
    p = t.cli("user", "apop", ALICE, password="apop secret")
    assert "APOP secret set" in p.stdout
    put_message(t, ALICE, msg(1))
    c = clients(t)
    m = re.fullmatch(r"\+OK Tern POP3 server ready (<\d+\.\d+@mx\.example\.org>)", c.greeting)
    assert m, c.greeting
    r = c.cmd("APOP %s %s" % (ALICE, apop_digest(c.greeting, "apop secret")))
    assert r.startswith("+OK Logged in: maildrop has 1 message"), r
    c.cmd("QUIT")
    t.wait_log(r"pop3 login user=alice@example\.org method=apop client=127\.0\.0\.1")
    # every greeting has its own timestamp; a replayed digest fails
    c2 = clients(t)
    assert c2.greeting != c.greeting
    r = c2.cmd("APOP %s %s" % (ALICE, apop_digest(c.greeting, "apop secret")))
    assert r.startswith("-ERR [AUTH] "), r
    # the login password is not the APOP secret
    c3 = clients(t)
    assert c3.cmd("APOP %s %s" % (ALICE, apop_digest(c3.greeting, ALICEPW))).startswith("-ERR [AUTH]")
    # bob has no APOP secret: fails even with his password
    c4 = clients(t)
    assert c4.cmd("APOP %s %s" % (BOB, apop_digest(c4.greeting, BOBPW))).startswith("-ERR [AUTH]")
    assert c4.cmd("APOP %s nothex" % BOB).startswith("-ERR ")
    # poplib's apop()
    p = poplib.POP3("127.0.0.1", t.pop3_port, timeout=10)
    p.apop(ALICE, "apop secret")
    assert p.stat()[0] == 1
    p.quit()
    # removed: APOP fails, the password still works
    t.cli("user", "apop", ALICE, "--remove")
    c5 = clients(t)
    assert c5.cmd("APOP %s %s" % (ALICE, apop_digest(c5.greeting, "apop secret"))).startswith("-ERR [AUTH]")
    login(clients(t))


def test_apop_off_by_default(tern3, clients):
    tern3.cli("user", "apop", ALICE, password="s")
    c = clients(tern3)
    assert "<" not in c.greeting
    assert c.cmd("APOP %s %s" % (ALICE, "0" * 32)).startswith("-ERR ")
    login(c)


# ---- locking, failures, limits ---------------------------------------------------------


def test_in_use(tern3, clients):
    put_message(tern3, ALICE, msg(1))
    a = clients(tern3)
    login(a)
    b = clients(tern3)
    assert b.cmd("USER " + ALICE).startswith("+OK")
    r = b.cmd("PASS " + ALICEPW)
    assert r.startswith("-ERR [IN-USE] "), r
    # b stays in AUTHORIZATION and may try again later
    assert b.cmd("STAT").startswith("-ERR ")
    assert "UIDL" in capa(b)
    # another user is not affected
    assert clients(tern3).cmd("AUTH PLAIN " + b64("\0%s\0%s" % (BOB, BOBPW))).startswith("+OK")
    # the same via SASL, and under another spelling of the address
    r = b.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (ALICE, ALICEPW)))
    assert r.startswith("-ERR [IN-USE] "), r
    r = b.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (ALICE.upper(), ALICEPW)))
    assert r.startswith("-ERR [IN-USE] "), r
    r = scram_login(b, "Alice@Example.ORG", ALICEPW)
    assert r.startswith("-ERR [IN-USE] "), r
    a.cmd("DELE 1")
    assert a.cmd("QUIT").startswith("+OK")
    assert a.closed()
    login(b)
    assert b.cmd("STAT") == "+OK 0 0"
    tern3.wait_log(r"pop3 in-use user=alice@example\.org")


def test_in_use_race(tern3, clients):
    """Eight sessions log in to one maildrop at the same moment: exactly one
    gets it, the others [IN-USE]."""
    import threading
    put_message(tern3, ALICE, msg(1))
    cs = [clients(tern3) for _ in range(8)]
    for c in cs:
        c.cmd("USER " + ALICE)
    answers = [None] * len(cs)
    go = threading.Barrier(len(cs))

    def one(i):
        go.wait()
        answers[i] = cs[i].cmd("PASS " + ALICEPW, timeout=30)
    th = [threading.Thread(target=one, args=(i,)) for i in range(len(cs))]
    for x in th:
        x.start()
    for x in th:
        x.join(60)
    ok = [a for a in answers if a.startswith("+OK")]
    assert len(ok) == 1, answers
    assert all(a.startswith("-ERR [IN-USE] ") for a in answers if not a.startswith("+OK")), answers


def test_wrong_password_and_unknown_user(tern3, clients):
    c = clients(tern3)
    c.cmd("USER " + ALICE)
    r1 = c.cmd("PASS wrong")
    assert r1.startswith("-ERR [AUTH] "), r1
    c.cmd("USER nobody@example.org")
    r2 = c.cmd("PASS wrong")
    assert r2 == r1, "the answer does not tell which users exist"
    # the third failure closes the session
    c.cmd("USER " + ALICE)
    assert c.cmd("PASS wrong").startswith("-ERR")
    assert c.closed(timeout=20)
    tern3.wait_log(r"pop3 login failed user=alice@example\.org method=password client=127\.0\.0\.1")


def failed_login_time(t, clients):
    c = clients(t)
    c.cmd("USER " + ALICE)
    t0 = time.monotonic()
    r = c.cmd("PASS wrong", timeout=30)
    dt = time.monotonic() - t0
    assert r.startswith("-ERR [AUTH]")
    c.cmd("QUIT")
    return dt


def test_failed_logins_are_slowed_down(tern3, clients):
    times = [failed_login_time(tern3, clients) for _ in range(4)]
    # the shared throttle: the 1st costs only the hash, then 250 ms doubling
    assert times[3] > times[0] + 0.5, times
    assert times[2] > times[0] + 0.2, times
    assert times[3] < 15, times
    # a success forgives (throttle_success) and answers without delay
    c = clients(tern3)
    t0 = time.monotonic()
    login(c)
    assert time.monotonic() - t0 < times[3]
    c.cmd("QUIT")
    assert failed_login_time(tern3, clients) < times[3] - 0.3


def test_scram_failures_are_slowed_down(tern3, clients):
    """SCRAM failures count in the shared throttle like password failures."""
    times = []
    for _ in range(4):
        c = clients(tern3)
        t0 = time.monotonic()
        r = scram_login(c, ALICE, "wrong")
        times.append(time.monotonic() - t0)
        assert r.startswith("-ERR [AUTH]")
        c.cmd("QUIT")
    assert times[3] > times[0] + 0.5, times


def test_disconnect_and_shutdown_while_login_pending(pop3, clients):
    """Clients that vanish while their password is being checked or while a
    failed login is held back must not upset the server (ASan build)."""
    t = pop3()
    for i in range(6):
        c = clients(t)
        c.send("USER %s\r\nPASS %s\r\n" % (ALICE, "wrong" if i % 2 else ALICEPW))
        c.close()
    # by now failures are delayed: leave some waiting and go away
    for i in range(3):
        c = clients(t)
        c.send("USER %s\r\nPASS wrong\r\n" % ALICE)
        assert c.line() == "+OK Send your password"
        c.close()
    time.sleep(0.3)
    waiting = clients(t)
    waiting.send("USER %s\r\nPASS wrong\r\n" % BOB)
    assert waiting.line() == "+OK Send your password"
    login(clients(t), BOB, BOBPW)
    t0 = time.monotonic()
    t.stop()                               # with a failed login still held back
    assert time.monotonic() - t0 < 10
    assert waiting.closed(timeout=10)
    assert t.proc.returncode == 0


def test_overlong_lines(tern3, clients):
    put_message(tern3, ALICE, msg(1))
    c = clients(tern3)
    # 255 octets with CRLF (RFC 2449 4) is the limit
    assert c.cmd("USER " + "a" * 248).startswith("+OK")
    r = c.cmd("USER " + "a" * 249)
    assert r.startswith("-ERR ") and len(r) > 5, r
    login(c)
    r = c.cmd("NOOP " + "z" * 100000)
    assert r.startswith("-ERR "), r
    assert c.cmd("NOOP") == "+OK"
    c.send("LIST " + "9" * 5000 + "\r\nSTAT\r\n")
    assert c.line().startswith("-ERR ")
    assert c.line().startswith("+OK 1 ")
    assert c.cmd("QUIT").startswith("+OK")


def test_nul_and_controls(tern3, clients):
    c = clients(tern3)
    assert c.cmd("USER al\x00ice@example.org").startswith("-ERR ")
    assert c.cmd("NO\x00OP").startswith("-ERR ")
    assert c.cmd("\x01\x02").startswith("-ERR ")
    assert c.cmd("").startswith("-ERR ")
    login(c)
    assert c.cmd("NOOP") == "+OK"


def test_too_many_errors_closes(tern3, clients):
    c = clients(tern3)
    for i in range(9):
        assert c.cmd("FROB %d" % i).startswith("-ERR ")
    assert "TOP" in capa(c)          # still there after 9
    assert c.cmd("FROB").startswith("-ERR ")
    assert c.closed()
    tern3.wait_log(r"pop3 error client=127\.0\.0\.1 command=\"-\" result=\"too many errors\"")
    # in TRANSACTION the same, and nothing marked is deleted
    put_message(tern3, ALICE, msg(1))
    c = clients(tern3)
    login(c)
    c.cmd("DELE 1")
    c.send("".join("BAD\r\n" for _ in range(12)))
    errs = 0
    try:
        while True:
            assert c.line().startswith("-ERR")
            errs += 1
    except EOFError:
        pass
    assert errs == 10
    assert len(tern3.messages(ALICE)) == 1


def test_pipelining(tern3, clients):
    for i in range(3):
        put_message(tern3, ALICE, msg(i, ".dotted\n"))
    c = clients(tern3)
    c.send("CAPA\r\nUSER %s\r\nPASS %s\r\nSTAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\nTOP 2 0\r\nFROB\r\n"
           "DELE 1\r\nDELE 3\r\nRSET\r\nDELE 2\r\nNOOP\r\nQUIT\r\n" % (ALICE, ALICEPW))
    assert c.line().startswith("+OK")
    assert "PIPELINING" in c.multi()
    assert c.line().startswith("+OK")
    assert c.line().startswith("+OK Logged in: maildrop has 3 messages")
    assert c.line().startswith("+OK 3 ")
    assert c.line().startswith("+OK 3 messages")
    assert len(c.multi()) == 3
    assert c.line().startswith("+OK 2 ")
    assert c.line().startswith("+OK")
    assert c.multi()[-2:] == ["body of message 0", ".dotted"]
    assert c.line().startswith("+OK")
    assert c.multi()[-1] == ""
    assert c.line().startswith("-ERR")
    assert c.line() == "+OK Message 1 deleted"
    assert c.line() == "+OK Message 3 deleted"
    assert c.line().startswith("+OK Maildrop has 3 messages")
    assert c.line() == "+OK Message 2 deleted"
    assert c.line() == "+OK"
    assert c.line() == "+OK mx.example.org POP3 server signing off (2 messages left)"
    assert c.closed()
    assert len(tern3.messages(ALICE)) == 2


def test_pipelined_large_retrs(tern3, clients):
    """Many RETRs of big messages in one write: all answers, in order, complete."""
    big = [msg(i, ("%d" % i) * 70 + "\n") * 1 + "x" * 100 + "\n" + ("line %d\n" % i) * 5000
           for i in range(8)]
    for m in big:
        put_message(tern3, ALICE, m)
    c = clients(tern3)
    login(c)
    c.send("".join("RETR %d\r\n" % i for i in range(1, 9)) + "STAT\r\n")
    for i, m in enumerate(big):
        assert c.line() == "+OK %d octets" % len(wire(m.encode()))
        assert unstuff(c.multi_raw(timeout=30)) == wire(m.encode())
    assert c.line().startswith("+OK 8 ")


def test_timeout(pop3, clients):
    t = pop3("pop3_timeout = 1s\n")
    put_message(t, ALICE, msg(1))
    c = clients(t)
    login(c)
    c.cmd("DELE 1")
    t0 = time.monotonic()
    assert c.closed(timeout=15)
    assert 0.5 < time.monotonic() - t0 < 10
    assert c.buf.startswith(b"-ERR"), c.buf
    t.wait_log(r"pop3 timeout client=127\.0\.0\.1")
    assert len(t.messages(ALICE)) == 1, "a timeout commits nothing"
    # the lock is free again
    login(clients(t))


def small_rcvbuf_client(t):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.settimeout(10)
    s.connect(("127.0.0.1", t.pop3_port))
    c = P3(s)
    assert c.line().startswith("+OK")
    login(c)
    return c


BIG = b"Subject: big\n\n" + b"".join(b"%07d some text to fill the line\n" % i for i in range(80000))


@pytest.mark.slow
def test_timeout_spares_a_slow_reader(pop3):
    """A download that takes longer than pop3_timeout is not inactivity: the
    client must still be able to DELE and QUIT afterwards (else a big message
    on a slow link is downloaded again and again, never deleted)."""
    t = pop3("pop3_timeout = 1s\n")
    put_message(t, ALICE, BIG)
    c = small_rcvbuf_client(t)
    t0 = time.monotonic()
    c.send("RETR 1\r\n")
    head = c.rawline()
    assert head == b"+OK %d octets" % len(wire(BIG))
    got = c.buf
    c.buf = b""
    c.sock.settimeout(10)
    while not got.endswith(b"\r\n.\r\n"):
        chunk = c.sock.recv(32768)
        assert chunk, "connection closed after %d octets" % len(got)
        got += chunk
        # pace the reading so the whole transfer takes about 3.5 s
        ahead = t0 + 3.5 * len(got) / len(wire(BIG)) - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        if b"\r\n.\r\n-ERR" in got:
            break
    assert time.monotonic() - t0 > 3
    assert unstuff(got[:len(wire(BIG))]) == wire(BIG)
    assert got == wire(BIG) + b".\r\n", got[-100:]
    assert c.cmd("DELE 1").startswith("+OK")
    assert c.cmd("QUIT").startswith("+OK")
    assert t.messages(ALICE) == []


@pytest.mark.slow
def test_timeout_ends_a_stalled_download(pop3):
    t = pop3("pop3_timeout = 1s\n")
    put_message(t, ALICE, BIG)
    c = small_rcvbuf_client(t)
    mark = len(t.lines)
    c.send("RETR 1\r\n")
    # the client reads nothing more: closed after the timeout (twice: once
    # forgiven while the engine still made progress), committing nothing
    t.wait_log(r"pop3 disconnect client=127\.0\.0\.1 user=alice@example\.org", timeout=20,
               start=mark)
    c.close()
    assert len(t.messages(ALICE)) == 1
    login(clients_free(t))


def clients_free(t):
    s = socket.create_connection(("127.0.0.1", t.pop3_port), timeout=10)
    c = P3(s)
    assert c.line().startswith("+OK")
    return c


def test_shutdown_during_session(pop3, clients):
    t = pop3()
    put_message(t, ALICE, msg(1))
    c = clients(t)
    login(c)
    c.cmd("DELE 1")
    t.stop()
    assert c.closed(timeout=10)
    assert c.buf.startswith(b"-ERR [SYS/TEMP]"), c.buf
    assert len(t.messages(ALICE)) == 1


def test_maildrop_unavailable_is_sys_temp(tern3, clients):
    md = tern3.maildir(ALICE)
    shutil.rmtree(os.path.join(md, "new"))
    with open(os.path.join(md, "new"), "w") as f:
        f.write("not a directory")
    c = clients(tern3)
    c.cmd("USER " + ALICE)
    r = c.cmd("PASS " + ALICEPW)
    assert r.startswith("-ERR [SYS/TEMP] "), r
    assert c.cmd("CAPA").startswith("+OK")   # still in AUTHORIZATION
    c.multi()
    assert c.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (BOB, BOBPW))).startswith("+OK")


# ---- curl ---------------------------------------------------------------------------


def curl(*args, check=True):
    if not shutil.which("curl"):
        pytest.fail("curl is not installed (tools/deps.sh installs it)")
    p = subprocess.run(["curl", "-sS", "--max-time", "30", *args], capture_output=True, timeout=60)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stderr)
    return p


def test_curl(tern3):
    contents = [msg(i, ".dotted line\n").encode() for i in range(3)]
    for m in contents:
        put_message(tern3, ALICE, m)
    base = "pop3://127.0.0.1:%d" % tern3.pop3_port
    u = ["-u", "%s:%s" % (ALICE, ALICEPW)]
    # RETR
    p = curl(base + "/2", *u)
    assert p.stdout == wire(contents[1])
    # LIST
    p = curl(base + "/", *u)
    assert p.stdout.decode().splitlines() == ["%d %d" % (i + 1, len(wire(m))) for i, m in enumerate(contents)]
    # UIDL via a custom command
    p = curl(base + "/", *u, "-X", "UIDL")
    lines = p.stdout.decode().splitlines()
    assert [l.split()[0] for l in lines] == ["1", "2", "3"]
    # pop3s with implicit TLS
    p = curl("pop3s://127.0.0.1:%d/1" % tern3.pop3s_port, "--insecure", *u)
    assert p.stdout == wire(contents[0])
    # STARTTLS (STLS) required on pop3://
    p = curl(base + "/3", "--ssl-reqd", "--insecure", *u, "-v")
    assert p.stdout == wire(contents[2])
    assert b"STLS" in p.stderr
    # wrong password: curl fails
    p = curl(base + "/1", "-u", "%s:nope" % ALICE, check=False)
    assert p.returncode != 0
    # DELE via curl, then the maildrop shrinks (curl sends QUIT)
    curl(base + "/1", *u, "-X", "DELE", "-I")
    assert len(tern3.messages(ALICE)) == 2
    tern3.wait_log(r"pop3 tls version=TLSv1\.[23]")


# ---- fetchmail: a maildrop of 500 -------------------------------------------------------


N_BULK = 500


def fill_bulk(t):
    ids = set()
    for i in range(N_BULK):
        mid = "<%d.bulk@remote.test>" % i
        ids.add(mid)
        body = "".join("line %d of message %d%s\n" % (k, i, " ." if k % 7 == 0 else "")
                       for k in range(i % 40))
        put_message(t, ALICE, "From: bulk@remote.test\nTo: alice@example.org\nSubject: bulk %d\n"
                    "Message-ID: %s\n\n%s.leading dot\n" % (i, mid, body))
    return ids


def run_fetchmail(t, outdir, keep):
    fm = shutil.which("fetchmail")
    if not fm:
        pytest.fail("fetchmail is not installed (tools/deps.sh installs it)")
    home = os.path.join(t.dir, "fmhome")
    os.makedirs(home, exist_ok=True)
    os.makedirs(outdir, exist_ok=True)
    rc = os.path.join(home, "fetchmailrc")
    with open(rc, "w") as f:
        f.write(
            "set no bouncemail\n"
            "poll 127.0.0.1 protocol pop3 port %d uidl auth password timeout 60\n"
            "  user \"%s\" there with password \"%s\" is root here\n"
            "  options %s sslproto '' no sslcertck\n"
            "  mda \"cat > $(mktemp -p %s m.XXXXXXXXXX)\"\n"
            % (t.pop3_port, ALICE, ALICEPW, "keep" if keep else "no keep fetchall", outdir))
    os.chmod(rc, 0o600)
    p = subprocess.run([fm, "-f", rc, "--nosyslog", "--nodetach", "--pidfile",
                        os.path.join(home, "pid"), "--idfile", os.path.join(home, "ids")],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, HOME=home, FETCHMAILHOME=home))
    return p


def fetched_ids(outdir):
    ids = []
    for name in os.listdir(outdir):
        with open(os.path.join(outdir, name), "rb") as f:
            data = f.read()
        m = re.search(rb"^Message-ID: (<[^>]*>)", data, re.M | re.I)
        assert m, data[:300]
        assert data.rstrip(b"\r\n").endswith(b".leading dot"), data[-100:]
        ids.append(m.group(1).decode())
    return ids


def test_fetchmail_500_messages_delete(tern3):
    ids = fill_bulk(tern3)
    out = os.path.join(tern3.dir, "fetched")
    p = run_fetchmail(tern3, out, keep=False)
    assert p.returncode == 0, p.stdout + p.stderr
    got = fetched_ids(out)
    assert len(got) == N_BULK and set(got) == ids, "lost or duplicated messages"
    assert all_files(tern3, ALICE) == [], "the maildrop is empty after fetching"
    tern3.wait_log(r"pop3 update user=alice@example\.org deleted=500")


def test_fetchmail_keep_with_uidl(tern3):
    ids = fill_bulk(tern3)
    out = os.path.join(tern3.dir, "fetched")
    p = run_fetchmail(tern3, out, keep=True)
    assert p.returncode == 0, p.stdout + p.stderr
    got = fetched_ids(out)
    assert len(got) == N_BULK and set(got) == ids
    assert len(all_files(tern3, ALICE)) == N_BULK
    # nothing new the second time (fetchmail exits 1: no mail), even after a
    # restart and another program flagging some of them
    restart(tern3)
    md = tern3.maildir(ALICE)
    for name in sorted(os.listdir(os.path.join(md, "new")))[:50]:
        os.rename(os.path.join(md, "new", name), os.path.join(md, "cur", name + ":2,S"))
    new = put_message(tern3, ALICE, "Message-ID: <fresh@remote.test>\n\nnew\n.leading dot\n")
    out2 = os.path.join(tern3.dir, "fetched2")
    p = run_fetchmail(tern3, out2, keep=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert fetched_ids(out2) == ["<fresh@remote.test>"]
    out3 = os.path.join(tern3.dir, "fetched3")
    p = run_fetchmail(tern3, out3, keep=True)
    assert p.returncode == 1, p.stdout + p.stderr
    assert os.listdir(out3) == []
    assert len(all_files(tern3, ALICE)) == N_BULK + 1
    assert new

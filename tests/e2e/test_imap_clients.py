"""Real IMAP clients against the real binary (issue 5, "real clients run in
make check"): mbsync (isync) syncing an account both ways, again after changes
on each side, and a third time that must change nothing; curl's imap:// for
the commands test_imap.py does not already cover (FETCH by UID from another
mailbox, SEARCH and EXAMINE via -X, imaps://); and a Node session with the npm
packages nodemailer (sending by SMTP) and imapflow (LIST, FETCH, STORE, MOVE,
APPEND, IDLE), installed into tests/e2e/node/node_modules from the committed
package-lock.json the first time and used offline after that.

Everything is loopback-only and every subprocess has a timeout."""
import email
import imaplib
import json
import os
import re
import select
import shutil
import smtplib
import subprocess
import time

import pytest

ALICE, ALICEPW = "alice@example.org", "alicepw"
HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")

# IMAP flags <-> Maildir info letters (the ones mbsync 1.4 maps, $Forwarded included)
FLAG_LETTER = {"\\Draft": "D", "\\Flagged": "F", "$Forwarded": "P", "\\Answered": "R",
               "\\Seen": "S", "\\Deleted": "T"}


def msg(mid, subject, body, to=ALICE):
    return ("From: Sender <sender@example.net>\r\n"
            "To: %s\r\n"
            "Subject: %s\r\n"
            "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
            "Message-ID: <%s>\r\n"
            "\r\n"
            "%s\r\n" % (to, subject, mid, body))


def deliver(t, mids, to=ALICE):
    s = smtplib.SMTP("127.0.0.1", t.smtp_port, timeout=10)
    for mid in mids:
        s.sendmail("sender@example.net", [to], msg(mid, "subject of " + mid, "body of " + mid + "."))
    s.quit()


@pytest.fixture
def timap(make_tern):
    return make_tern(imap=True)


def imap_login(t, user=ALICE, pw=ALICEPW):
    c = imaplib.IMAP4("127.0.0.1", t.imap_port, timeout=10)
    typ, _ = c.login(user, pw)
    assert typ == "OK"
    return c


def ok(res):
    typ, data = res
    assert typ == "OK", (typ, data)
    return data


def mailbox_names(c):
    names = []
    for line in ok(c.list()):
        if line is None:
            continue
        line = line.decode() if isinstance(line, bytes) else line
        m = re.match(r'\((.*?)\) (NIL|"(?:[^"\\]|\\.)") (.*)$', line)
        assert m, line
        name = m.group(3)
        if name.startswith('"'):
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        if "\\noselect" in m.group(1).lower() or "\\nonexistent" in m.group(1).lower():
            continue
        names.append(name)
    return sorted(names)


def quote(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def server_state(t):
    """{mailbox: {"uidvalidity", "uidnext", "msgs": sorted [(uid, message-id, flags)]}}"""
    c = imap_login(t)
    state = {}
    try:
        for name in mailbox_names(c):
            st = ok(c.status(quote(name), "(UIDNEXT UIDVALIDITY MESSAGES)"))[0].decode()
            uidnext = int(re.search(r"UIDNEXT (\d+)", st).group(1))
            uidvalidity = int(re.search(r"UIDVALIDITY (\d+)", st).group(1))
            n = int(re.search(r"MESSAGES (\d+)", st).group(1))
            ok(c.select(quote(name), readonly=True))
            msgs = []
            if n:
                data = ok(c.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"))
                for item in data:
                    if not isinstance(item, tuple):
                        continue
                    head = item[0].decode()
                    uid = int(re.search(r"UID (\d+)", head).group(1))
                    flags = re.search(r"FLAGS \(([^)]*)\)", head).group(1).split()
                    flags = tuple(sorted(f for f in flags if f != "\\Recent"))
                    mid = email.message_from_bytes(item[1]).get("Message-ID", "").strip()
                    msgs.append((uid, mid, flags))
            assert len(msgs) == n, (name, n, msgs)
            state[name] = {"uidvalidity": uidvalidity, "uidnext": uidnext, "msgs": sorted(msgs)}
            c.close()
    finally:
        c.logout()
    return state


def local_state(root):
    """{folder: sorted [(message-id, flag letters, file name)]} for every Maildir under root."""
    state = {}
    for dirpath, dirnames, _ in os.walk(root):
        if not all(os.path.isdir(os.path.join(dirpath, s)) for s in ("cur", "new", "tmp")):
            continue
        for s in ("cur", "new", "tmp"):
            dirnames.remove(s)
        folder = os.path.relpath(dirpath, root)
        msgs = []
        for sub in ("cur", "new"):
            for fn in os.listdir(os.path.join(dirpath, sub)):
                with open(os.path.join(dirpath, sub, fn), "rb") as f:
                    mid = email.message_from_bytes(f.read()).get("Message-ID", "").strip()
                flags = fn.split(":2,", 1)[1] if ":2," in fn else ""
                msgs.append((mid, flags, sub + "/" + fn))
        state[folder] = sorted(msgs)
    return state


def mids(msgs):
    return sorted(m[1] for m in msgs)


# ---- mbsync (isync) -------------------------------------------------------------


def need_mbsync():
    if not shutil.which("mbsync"):
        pytest.fail("mbsync not installed (Debian package isync; tools/deps.sh installs it)")


def mbsync(rc, home, timeout=90, allow=()):
    p = subprocess.run(["mbsync", "-c", rc, "-a", "-V"], capture_output=True, text=True,
                       timeout=timeout, env=dict(os.environ, HOME=home), stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    assert p.returncode == 0, "mbsync failed (%d):\n%s" % (p.returncode, out[-6000:])
    # mbsync tolerates some server oddities with a warning: none is expected,
    # except its remarks on LOGIN without TLS, new local Maildirs, Maildir
    # mtime granularity, and what the caller allows
    allow = ("Password is being sent in the clear", "Maildir notice: no UIDVALIDITY, creating new.",
             "Maildir notice: sleeping due to recent directory modification.") + tuple(allow)
    odd = [l for l in out.splitlines() if re.search(r"warning|error|notice|unexpected|bogus", l, re.I)
           and not any(a in l for a in allow)]
    assert not odd, "mbsync warnings:\n" + "\n".join(odd[:20])
    return out


def write_mbsyncrc(t, base, tls):
    local = os.path.join(base, "local")
    os.makedirs(local, exist_ok=True)
    if tls:
        # the server's self-signed certificate, trusted as a "Host" certificate
        account = ("SSLType IMAPS\nPort %d\nCertificateFile %s\n"
                   % (t.imaps_port, os.path.join(t.data, "tls", "cert.pem")))
    else:
        # plaintext LOGIN is fine on loopback (the server allows it there);
        # mbsync only uses LOGIN without TLS when it is named explicitly
        account = "SSLType None\nPort %d\nAuthMechs LOGIN\n" % t.imap_port
    rc = os.path.join(base, "mbsyncrc")
    with open(rc, "w") as f:
        f.write("IMAPAccount tern\n"
                "Host 127.0.0.1\n"
                "User %s\n"
                "Pass %s\n"
                "%s"
                "Timeout 20\n"
                "\n"
                "IMAPStore remote\n"
                "Account tern\n"
                "\n"
                "MaildirStore local\n"
                "Path %s/\n"
                "Inbox %s/INBOX\n"
                "SubFolders Verbatim\n"
                "\n"
                "Channel tern\n"
                "Far :remote:\n"
                "Near :local:\n"
                "Patterns *\n"
                "Create Both\n"
                "Expunge Both\n"
                "SyncState *\n"
                % (ALICE, ALICEPW, account, local, local))
    os.chmod(rc, 0o600)
    return rc, local


def local_file(state, folder, mid):
    hits = [m for m in state[folder] if m[0] == mid]
    assert len(hits) == 1, (folder, mid, state[folder])
    return hits[0][2]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "imaps"])
def test_mbsync_two_way(timap, tmp_path, tls):
    need_mbsync()
    t = timap
    base = str(tmp_path / "mbsync")
    rc, local = write_mbsyncrc(t, base, tls)

    # the account: 4 messages in INBOX (SMTP), two in Work and one in Lists/tern (APPEND)
    deliver(t, ["m1@example.net", "m2@example.net", "m3@example.net", "m4@example.net"])
    c = imap_login(t)
    ok(c.create("Work"))
    ok(c.create("Lists/tern"))
    ok(c.append("Work", None, None, msg("w1@example.net", "work 1", "w1").encode()))
    ok(c.append("Work", "(\\Seen)", None, msg("w2@example.net", "work 2", "w2").encode()))
    ok(c.append("Lists/tern", None, None, msg("l1@example.net", "list 1", "l1").encode()))
    c.logout()

    # 1: everything arrives once in the empty local Maildir
    mbsync(rc, base)
    srv = server_state(t)
    loc = local_state(local)
    assert sorted(loc) == sorted(srv), (sorted(loc), sorted(srv))
    for name in ("Drafts", "Sent", "Trash", "Junk", "Archive", "Work", "Lists/tern", "INBOX"):
        assert name in loc, (name, sorted(loc))
    for name, s in srv.items():
        assert sorted(m[0] for m in loc[name]) == mids(s["msgs"]), (name, loc[name], s)
        letters = {m[1]: "".join(sorted(FLAG_LETTER[f] for f in m[2] if f in FLAG_LETTER))
                   for m in s["msgs"]}
        for mid, flags, _ in loc[name]:
            assert flags == letters[mid], (name, mid, flags, letters[mid])
    assert mids(srv["INBOX"]["msgs"]) == ["<m1@example.net>", "<m2@example.net>",
                                          "<m3@example.net>", "<m4@example.net>"]
    assert [m[1] for m in loc["Work"] if m[0] == "<w2@example.net>"] == ["S"]

    # 2: changes on both sides
    # local: flag m1 \Flagged $Forwarded \Seen, delete m2, add a message in a new folder Local
    # and a \Seen one in INBOX
    f = local_file(loc, "INBOX", "<m1@example.net>")
    name = os.path.basename(f).split(":2,", 1)[0]
    os.rename(os.path.join(local, "INBOX", f), os.path.join(local, "INBOX", "cur", name + ":2,FPS"))
    os.unlink(os.path.join(local, "INBOX", local_file(loc, "INBOX", "<m2@example.net>")))
    for s in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(local, "Local", s))
    with open(os.path.join(local, "Local", "new", "1700000000.P1Q1.localhost"), "wb") as fh:
        fh.write(msg("local1@example.net", "written locally", "local 1").encode())
    with open(os.path.join(local, "INBOX", "cur", "1700000001.P1Q2.localhost:2,S"), "wb") as fh:
        fh.write(msg("local2@example.net", "read locally", "local 2").encode())
    # server: a new delivery, \Flagged on w1, m3 expunged
    deliver(t, ["m5@example.net"])
    c = imap_login(t)
    ok(c.select("Work"))
    typ, data = c.search(None, "HEADER", "Message-ID", "w1@example.net")
    assert typ == "OK" and data[0].split() == [b"1"], data
    ok(c.store("1", "+FLAGS", "(\\Flagged)"))
    ok(c.select("INBOX"))
    typ, data = c.search(None, "HEADER", "Message-ID", "m3@example.net")
    assert typ == "OK" and len(data[0].split()) == 1, data
    ok(c.store(data[0].split()[0].decode(), "+FLAGS", "(\\Deleted)"))
    ok(c.expunge())
    typ, data = c.search(None, "HEADER", "Message-ID", "m4@example.net")
    assert typ == "OK" and len(data[0].split()) == 1, data
    ok(c._simple_command("MOVE", data[0].split()[0].decode(), "Archive"))
    c.logout()

    mbsync(rc, base)
    srv = server_state(t)
    loc = local_state(local)
    assert sorted(loc) == sorted(srv), (sorted(loc), sorted(srv))
    expect = {
        "INBOX": {"<m1@example.net>": "FPS", "<m5@example.net>": "", "<local2@example.net>": "S"},
        "Archive": {"<m4@example.net>": ""},
        "Work": {"<w1@example.net>": "F", "<w2@example.net>": "S"},
        "Lists/tern": {"<l1@example.net>": ""},
        "Local": {"<local1@example.net>": ""},
    }
    for name in sorted(srv):
        want = expect.get(name, {})
        got_srv = {m[1]: "".join(sorted(FLAG_LETTER[x] for x in m[2] if x in FLAG_LETTER))
                   for m in srv[name]["msgs"]}
        assert len(got_srv) == len(srv[name]["msgs"]), ("duplicate on server", name, srv[name])
        assert got_srv == want, ("server", name, srv[name]["msgs"])
        got_loc = {m[0]: m[1] for m in loc[name]}
        assert len(got_loc) == len(loc[name]), ("duplicate locally", name, loc[name])
        assert got_loc == want, ("local", name, loc[name])

    # flags set by mbsync are mirrored into the server's Maildir file names too
    inbox_files = [os.path.basename(p) for p in t.messages(ALICE, "cur") + t.messages(ALICE, "new")]
    assert len(inbox_files) == 3 and sum(n.endswith(":2,FS") for n in inbox_files) == 1, inbox_files
    assert sum(n.endswith(":2,S") for n in inbox_files) == 1, inbox_files

    # 3: nothing left to do, on either side, also after a server restart (the
    # index keeps UIDVALIDITY and UIDs; the new process listens on new ports)
    before_srv, before_loc = srv, loc
    t.stop()
    t.proc, t.lines, t.ports = None, [], {}
    t.start()
    rc, _ = write_mbsyncrc(t, base, tls)
    mbsync(rc, base)
    assert server_state(t) == before_srv
    assert local_state(local) == before_loc


def letters(flags):
    return "".join(sorted(FLAG_LETTER[f] for f in flags if f in FLAG_LETTER))


def assert_converged(srv, loc):
    """Same folders, the same messages once each, the same flags on both sides."""
    assert sorted(loc) == sorted(srv), (sorted(loc), sorted(srv))
    for name in srv:
        s = {m[1]: letters(m[2]) for m in srv[name]["msgs"]}
        assert len(s) == len(srv[name]["msgs"]), ("duplicate on the server", name)
        l = {m[0]: m[1] for m in loc[name]}
        assert len(l) == len(loc[name]), ("duplicate locally", name)
        assert l == s, (name, sorted(set(l.items()) ^ set(s.items()))[:10])


def test_mbsync_many_messages_and_odd_names(timap, tmp_path):
    """300 messages (mbsync pipelines its commands) and mailbox names with a
    space, a dot and modified UTF-7 on the server, a space and a dot locally."""
    need_mbsync()
    t = timap
    n = 300
    s = smtplib.SMTP("127.0.0.1", t.smtp_port, timeout=30)
    for i in range(n):
        s.sendmail("sender@example.net", [ALICE], msg("v%d@example.net" % i, "volume %d" % i,
                                                      "line of message %d\r\n" % i * 20))
    s.quit()
    c = imap_login(t)
    ok(c.create("Entw&APw-rfe"))
    ok(c.create('"Big Box"'))
    ok(c.append("Entw&APw-rfe", None, None, msg("u1@example.net", "umlaut", "u").encode()))
    ok(c.append('"Big Box"', "(\\Answered)", None, msg("bb1@example.net", "space", "b").encode()))
    c.logout()
    base = str(tmp_path / "mbsync")
    rc, local = write_mbsyncrc(t, base, False)
    for folder, mid in (("Old Mail", "old1@example.net"), ("Work.2024", "dot1@example.net")):
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(local, folder, sub))
        with open(os.path.join(local, folder, "cur", "1700000000.P9Q9.localhost:2,S"), "wb") as fh:
            fh.write(msg(mid, "local " + folder, "b").encode())

    mbsync(rc, base, timeout=120)
    srv, loc = server_state(t), local_state(local)
    assert_converged(srv, loc)
    assert len(loc["INBOX"]) == n
    for name in ("Entw&APw-rfe", "Big Box", "Old Mail", "Work.2024"):
        assert len(srv[name]["msgs"]) == 1, (name, srv[name])
    assert srv["Big Box"]["msgs"][0][2] == ("\\Answered",)
    assert srv["Old Mail"]["msgs"][0][2] == ("\\Seen",)

    # every INBOX message read locally; the first half expunged on the server
    for mid, flags, fn in loc["INBOX"]:
        base_name = os.path.basename(fn).split(":2,", 1)[0]
        os.rename(os.path.join(local, "INBOX", fn),
                  os.path.join(local, "INBOX", "cur", base_name + ":2,S"))
    c = imap_login(t)
    ok(c.select("INBOX"))
    ok(c.store("1:%d" % (n // 2), "+FLAGS", "(\\Deleted)"))
    ok(c.expunge())
    c.logout()
    # read here, expunged there: mbsync reports those as conflicts (the expunge wins)
    out = mbsync(rc, base, timeout=120, allow=("Notice: conflicting changes in",))
    assert out.count("Notice: conflicting changes in") == n // 2, out[-3000:]
    srv, loc = server_state(t), local_state(local)
    assert_converged(srv, loc)
    assert len(srv["INBOX"]["msgs"]) == n // 2
    assert all(m[2] == ("\\Seen",) for m in srv["INBOX"]["msgs"]), srv["INBOX"]["msgs"][:5]

    mbsync(rc, base, timeout=120)
    assert server_state(t) == srv
    assert local_state(local) == loc


# ---- curl (what test_imap.py's test_curl_imap does not do) ------------------------


def curl(url, *args, timeout=30):
    p = subprocess.run(["curl", "-sS", "--max-time", "20", "-u", "%s:%s" % (ALICE, ALICEPW),
                        *args, url], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, (url, args, p.returncode, p.stderr)
    return p.stdout.decode("utf-8", "replace")


def test_curl_search_examine_and_imaps(timap):
    t = timap
    deliver(t, ["c1@example.net", "c2@example.net", "c3@example.net"])
    c = imap_login(t)
    ok(c.create("Lists/tern"))
    ok(c.append("Lists/tern", "(\\Flagged)", None, msg("cl@example.net", "in a folder", "folder body").encode()))
    c.logout()
    plain = "imap://127.0.0.1:%d" % t.imap_port
    tls = "imaps://127.0.0.1:%d" % t.imaps_port

    # FETCH by UID from a folder with a hierarchy separator in its name
    out = curl(plain + "/Lists%2Ftern;UID=1")
    assert "Message-ID: <cl@example.net>" in out and "folder body" in out, out
    # a section of a message: ;SECTION=HEADER.FIELDS is not in curl's grammar; TEXT is
    out = curl(plain + "/INBOX;UID=2;SECTION=TEXT")
    assert out.strip() == "body of c2@example.net.", out
    # SEARCH through the URL query and through -X on the selected mailbox
    out = curl(plain + "/INBOX?SUBJECT%20c3")
    assert re.search(r"^\* SEARCH 3\s*$", out, re.M), out
    out = curl(plain + "/INBOX", "-X", "UID SEARCH ALL")
    assert re.search(r"^\* SEARCH 1 2 3\s*$", out, re.M), out
    out = curl(plain + "/Lists%2Ftern", "-X", "SEARCH FLAGGED")
    assert re.search(r"^\* SEARCH 1\s*$", out, re.M), out
    # -X with a custom command: EXAMINE and STATUS come back as their untagged lines
    out = curl(plain + "/", "-X", "EXAMINE INBOX")
    assert re.search(r"^\* 3 EXISTS", out, re.M), out
    out = curl(plain + "/", "-X", 'STATUS "Lists/tern" (MESSAGES UIDNEXT)')
    assert re.search(r'^\* STATUS "?Lists/tern"? \(MESSAGES 1 UIDNEXT 2\)', out, re.M), out

    # imaps:// (implicit TLS, self-signed certificate): LIST, FETCH by UID, SEARCH
    out = curl(tls + "/", "--insecure")
    for name in ("INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive", "Lists/tern"):
        assert re.search(r'^\* LIST \([^)]*\) "/" "?%s"?\s*$' % re.escape(name), out, re.M), (name, out)
    out = curl(tls + "/INBOX;UID=1", "--insecure")
    assert "Message-ID: <c1@example.net>" in out and "body of c1@example.net." in out, out
    out = curl(tls + "/INBOX", "--insecure", "-X", "SEARCH TEXT c2@example.net")
    assert re.search(r"^\* SEARCH 2\s*$", out, re.M), out
    # and STARTTLS on the plain port, required by --ssl-reqd
    out = curl(plain + "/INBOX;UID=3", "--insecure", "--ssl-reqd")
    assert "body of c3@example.net." in out, out
    # APPEND by upload (-T), then fetch it back by UID with the UIDVALIDITY checked, and by MAILINDEX
    up = os.path.join(t.dir, "upload.eml")
    with open(up, "wb") as fh:
        fh.write(msg("up1@example.net", "uploaded by curl", "uploaded body").encode())
    curl(plain + "/Drafts", "-T", up)
    c = imap_login(t)
    st = ok(c.status("Drafts", "(UIDVALIDITY MESSAGES)"))[0].decode()
    c.logout()
    assert "MESSAGES 1" in st, st
    uidvalidity = re.search(r"UIDVALIDITY (\d+)", st).group(1)
    out = curl(plain + "/Drafts;UIDVALIDITY=%s;UID=1" % uidvalidity)
    assert "Message-ID: <up1@example.net>" in out and "uploaded body" in out, out
    out = curl(plain + "/Drafts;MAILINDEX=1;SECTION=HEADER")
    assert "Subject: uploaded by curl" in out and "uploaded body" not in out, out
    # SASL: AUTHENTICATE PLAIN (with SASL-IR, which curl uses when offered) and LOGIN
    for mech in ("PLAIN", "LOGIN"):
        out = curl(plain + "/INBOX;UID=1", "--login-options", "AUTH=" + mech)
        assert "body of c1@example.net." in out, (mech, out)
    # curl without --insecure must refuse the self-signed certificate (the test checks TLS is real)
    p = subprocess.run(["curl", "-sS", "--max-time", "20", "-u", "%s:%s" % (ALICE, ALICEPW),
                        tls + "/"], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 60, (p.returncode, p.stderr)


# ---- Node: nodemailer + imapflow ---------------------------------------------------


def node_modules_ready():
    return all(os.path.isfile(os.path.join(NODE_DIR, "node_modules", p, "package.json"))
               for p in ("imapflow", "nodemailer"))


@pytest.fixture(scope="session")
def node_env():
    """node and the npm packages of tests/e2e/node/package-lock.json: installed
    with `npm ci` only when node_modules is missing; never skipped silently."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("node and npm are needed for the imapflow test (Debian packages nodejs, npm)")
    if not node_modules_ready():
        try:
            p = subprocess.run([npm, "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"],
                               cwd=NODE_DIR, capture_output=True, text=True, timeout=300,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pytest.fail("`npm ci` in %s timed out after 300 s: is the npm registry reachable? "
                        "Install once with network access; later runs are offline." % NODE_DIR)
        if p.returncode != 0 or not node_modules_ready():
            pytest.fail("`npm ci` in %s failed (%d); the npm registry must be reachable for the "
                        "first run (later runs are offline):\n%s" % (NODE_DIR, p.returncode,
                                                                     (p.stdout + p.stderr)[-3000:]))
    return node


class NodeRun:
    """The Node script as a child process; its stdout is JSON lines."""

    def __init__(self, node, args):
        self.p = subprocess.Popen([node, os.path.join(NODE_DIR, "imapflow_session.js"), *args],
                                  cwd=NODE_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.buf = b""
        self.seen = []

    def event(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail("no output from the Node script within %ss" % timeout)
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    self.fail("Node script ended")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        ev = json.loads(line)
        self.seen.append(ev.get("event"))
        if ev.get("event") == "error":
            self.fail("Node script error: %s (response %r)" % (ev.get("message"), ev.get("response")))
        return ev

    def fail(self, why):
        self.kill()
        err = self.p.stderr.read().decode("utf-8", "replace")[-3000:]
        raise AssertionError("%s; events %s; stderr:\n%s" % (why, self.seen, err))

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(10)


@pytest.mark.parametrize("secure", [False, True], ids=["starttls", "imaps"])
def test_imapflow_nodemailer(timap, node_env, secure):
    t = timap
    run = NodeRun(node_env, ["127.0.0.1", str(t.imaps_port if secure else t.imap_port),
                             str(t.smtp_port), ALICE, ALICEPW, "1" if secure else "0"])
    try:
        assert run.event(30)["event"] == "sent"
        ev = run.event(30)
        assert ev == {"event": "idle", "idling": True}, ev
        deliver(t, ["idle1@example.net"])
        ev = run.event(30)
        assert ev == {"event": "idle2", "idling": True}, ev
        c = imap_login(t)
        ok(c.select("INBOX"))
        ok(c.uid("STORE", "1", "+FLAGS", "(\\Flagged)"))
        ok(c.uid("STORE", "3", "+FLAGS", "(\\Deleted)"))
        ok(c.expunge())
        c.logout()
        ev = run.event(30)
        assert ev["event"] == "result", ev
        assert run.p.wait(20) == 0
    finally:
        run.kill()
    r = ev["result"]

    # nodemailer: three messages accepted by the SMTP port
    assert [s["messageId"] for s in r["sent"]] == ["<node%d@example.net>" % i for i in (1, 2, 3)]
    assert all(s["accepted"] == [ALICE] for s in r["sent"]), r["sent"]
    # imapflow used TLS (STARTTLS on the plain port, which it does when offered, or imaps)
    assert r["secure"] is True
    caps = set(r["capabilities"])
    assert {"IMAP4rev1", "IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE"} <= caps, caps

    special = {b["path"]: b["specialUse"] for b in r["list"]}
    for name, use in (("Drafts", "\\Drafts"), ("Sent", "\\Sent"), ("Trash", "\\Trash"),
                      ("Junk", "\\Junk"), ("Archive", "\\Archive")):
        assert special.get(name) == use, (name, r["list"])
    assert special.get("INBOX") == "\\Inbox", r["list"]  # imapflow's own marker for INBOX
    assert all(b["delimiter"] == "/" for b in r["list"]), r["list"]

    assert r["inbox"]["exists"] == 3, r["inbox"]
    assert "\\Seen" in r["inbox"]["permanentFlags"], r["inbox"]
    msgs = r["messages"]
    assert [m["messageId"] for m in msgs] == ["<node%d@example.net>" % i for i in (1, 2, 3)], msgs
    assert [m["seq"] for m in msgs] == [1, 2, 3] and [m["uid"] for m in msgs] == [1, 2, 3]
    for i, m in enumerate(msgs, 1):
        assert m["subject"] == "node message %d" % i
        assert m["from"] == ["node%d@example.net" % i] and m["to"] == [ALICE]
        assert m["flags"] == [], m["flags"]
        assert m["sourceLength"] == m["size"], m
        assert m["internalDate"], m
        assert "Hello from nodemailer, message %d." % i in m["source"]
    assert msgs[0]["structure"]["type"] == "text/plain"
    st = msgs[1]["structure"]
    assert st["type"] == "multipart/mixed", st
    assert [ch["type"] for ch in st["children"]] == ["text/plain", "application/octet-stream"], st
    att = st["children"][1]
    assert att.get("disposition") == "attachment" and att.get("filename") == "report.bin", att
    assert att.get("encoding") == "base64", att
    assert 3000 * 4 // 3 <= att["size"] <= 3000 * 4 // 3 + 200, att  # base64 of 3000 bytes, with line breaks
    parsed = email.message_from_bytes(msgs[1]["source"].encode("latin-1"))
    parts = [p for p in parsed.walk() if p.get_filename() == "report.bin"]
    assert len(parts) == 1 and parts[0].get_payload(decode=True) == bytes(k % 256 for k in range(3000))

    assert "IMAP4REV2" in [e.upper() for e in r["enabled"]], r["enabled"]  # imapflow runs rev2
    assert r["download"] == {"length": 3000, "same": True, "contentType": "application/octet-stream",
                             "filename": "report.bin"}, r["download"]
    assert r["part1"] == "Hello from nodemailer, message 2.\r\n", r["part1"]
    assert r["seen"] is True
    assert r["searchUnseen"] == [2, 3], r["searchUnseen"]
    assert r["searchSubject"] == [3], r["searchSubject"]
    assert r["searchHeader"] == [2], r["searchHeader"]
    assert r["searchBody"] == [2], r["searchBody"]
    assert r["created"]["path"] == "Projekte/Größe" and r["created"]["created"] is True, r["created"]
    assert r["renamed"]["newPath"] == "Projekte/Übersicht", r["renamed"]
    assert r["deleted"]["path"] == "Temp", r["deleted"]
    assert "Projekte/Übersicht" in r["listAfter"] and "Temp" not in r["listAfter"], r["listAfter"]
    assert "Projekte/Größe" not in r["listAfter"], r["listAfter"]
    st = r["statusRenamed"]
    assert (st["path"], st["messages"], st["uidNext"], st["unseen"]) == ("Projekte/Übersicht", 0, 1, 0), st
    assert r["move"]["destination"] == "Archive"
    assert r["move"]["uidMap"] == [[2, 1]], r["move"]
    assert r["append"]["destination"] == "Drafts" and r["append"]["uid"] == 1, r["append"]
    assert r["imported"] == {"datedUid": 1, "nulUid": 2, "internalDate": "2020-01-02T03:04:05.000Z",
                             "flags": ["$Work", "\\Seen"],
                             # BODY[] and BODY[1] may not carry NUL: the server sends 0x80
                             # instead (as Dovecot does); BINARY[1] has the octet itself
                             "nulSource": "Subject: nul\r\nMessage-ID: <nul@example.net>\r\n\r\n"
                                          "binary \x80 byte\r\n",
                             "nulPart": "binary \x80 byte\r\n",
                             "nulBinary": "binary \x00 byte\r\n",
                             "search": [1, 2], "since": [1]}, r["imported"]
    ls = {b["path"]: b["status"] for b in r["listStatus"]}
    assert ls["INBOX"] == {"path": "INBOX", "messages": 2, "unseen": 1, "uidNext": 4}, ls
    assert ls["Archive"] == {"path": "Archive", "messages": 1, "unseen": 1, "uidNext": 2}, ls
    assert ls["Imported"] == {"path": "Imported", "messages": 2, "unseen": 1, "uidNext": 3}, ls
    assert r["copy"] == {"destination": "Trash", "uidMap": [[1, 1]]}, r["copy"]
    assert r["trashFlags"] == ["$Label1", "\\Answered", "\\Seen"], r["trashFlags"]
    assert r["trashHeaders"].strip() == "Subject: node message 1", r["trashHeaders"]
    assert r["trashDeleted"] is True and r["trashExists"] == 0, (r["trashDeleted"], r["trashExists"])
    assert r["inboxAfter"] == [
        {"uid": 1, "messageId": "<node1@example.net>", "flags": ["\\Seen"]},
        {"uid": 3, "messageId": "<node3@example.net>", "flags": []},
    ], r["inboxAfter"]
    # IDLE: the delivery arrived as EXISTS within a couple of seconds
    assert r["idleExists"]["count"] == 3 and r["idleExists"]["prevCount"] == 2, r["idleExists"]
    assert r["idleExists"]["ms"] < 5000, r["idleExists"]
    assert r["idleMessage"] == {"uid": 4, "messageId": "<idle1@example.net>"}, r["idleMessage"]
    assert r["idleFlags"] == {"seq": 1, "uid": 1, "flags": ["\\Flagged", "\\Seen"]}, r["idleFlags"]
    assert r["idleExpunge"] == {"seq": 2}, r["idleExpunge"]
    assert r["existsAfterExpunge"] == 2
    assert r["loggedOut"] is True

    # the server's view afterwards, by imaplib
    srv = server_state(t)
    assert srv["INBOX"]["msgs"] == [(1, "<node1@example.net>", ("\\Flagged", "\\Seen")),
                                    (4, "<idle1@example.net>", ())]
    assert srv["Archive"]["msgs"] == [(1, "<node2@example.net>", ())]
    assert srv["Drafts"]["msgs"] == [(1, "<nodedraft@example.net>", ("\\Draft",))]
    assert srv["Trash"]["msgs"] == [] and srv["Trash"]["uidnext"] == 2, srv["Trash"]
    # an IMAP4rev1 session sees the UTF-8 name in modified UTF-7 (RFC 3501 5.1.3)
    assert "Projekte/&ANw-bersicht" in srv and "Projekte/Gr&APY-&AN8-e" not in srv, sorted(srv)
    # the flags are mirrored into the INBOX file names for other Maildir tools
    names = [os.path.basename(p) for p in t.messages(ALICE, "cur") + t.messages(ALICE, "new")]
    assert len(names) == 2 and sum(n.endswith(":2,FS") for n in names) == 1, names

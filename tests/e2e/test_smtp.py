"""SMTP as a domain's MX (issue 2): the seed's transcript, extensions, relay
refusal, bad input and delivery into Maildirs, against the real binary."""
import os
import re
import smtplib
import socket
import ssl

import pytest

from conftest import Lines

SEED_DOMAINS = "dbc.mtview.ca.us thumper.bellcore.com tis.com darpa.mil"
SEED_USERS = (("mrose@dbc.mtview.ca.us", "pw1"), ("nsb@thumper.bellcore.com", "pw2"),
              ("galvin@tis.com", "pw3"), ("pvm@darpa.mil", "pw4"))
SEED_MESSAGE = (
    "To: Reviewers: ;\r\n"
    "Subject: Want to review a book?\r\n"
    "Date: Sun, 12 Apr 1992 11:50:40 -0700\r\n"
    "Message-ID: <18597.703104640@dbc.mtview.ca.us>\r\n"
    "From: Marshall Rose <mrose@dbc.mtview.ca.us>\r\n"
    "\r\n"
    "As you may have heard, I am undertaking the ....\r\n"
    "<in the interests of brevity, the majority of the body of the original message has been removed>\r\n"
    "/mtr\r\n"
)
SEED_RCPTS = ["nsb@thumper.bellcore.com", "galvin@tis.com", "pvm@darpa.mil"]


def check_seed_delivery(t, with_proto):
    for rcpt in SEED_RCPTS:
        msgs = t.read_messages(rcpt)
        assert len(msgs) == 1, (rcpt, t.messages(rcpt))
        m = msgs[0]
        assert b"\r" not in m, "messages are stored with LF line endings"
        assert m.startswith(b"Return-Path: <mrose@dbc.mtview.ca.us>\nDelivered-To: %s\nReceived: from baiji.dbc.mtview.ca.us ([127.0.0.1])\n\tby mx.example.org (Tern) with %s id " % (rcpt.encode(), with_proto.encode())), m[:300]
        assert SEED_MESSAGE.replace("\r\n", "\n").encode() in m
        assert m.endswith(b"/mtr\n")
        # Received is a trace field: RFC 5321 4.4, date at the end
        assert re.search(rb"\n\tfor <[^>]+>; \w{3}, \d+ \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\n", m) is None  # three rcpts: no "for"
        # the file name records physical and wire (CRLF) sizes
        name = os.path.basename(t.messages(rcpt)[0])
        s = int(re.search(r",S=(\d+)", name).group(1))
        w = int(re.search(r",W=(\d+)", name).group(1))
        assert s == len(m)
        assert w == len(m) + m.count(b"\n")


def test_seed_transcript_smtplib(make_tern):
    t = make_tern(domains=SEED_DOMAINS, users=SEED_USERS)
    s = smtplib.SMTP("127.0.0.1", t.smtp_port, local_hostname="baiji.dbc.mtview.ca.us", timeout=10)
    code, msg = s.helo("baiji.dbc.mtview.ca.us")
    assert code == 250 and msg.startswith(b"mx.example.org")
    assert s.mail("mrose@dbc.mtview.ca.us")[0] == 250
    for r in SEED_RCPTS:
        assert s.rcpt(r)[0] == 250
    code, msg = s.data(SEED_MESSAGE)
    assert code == 250 and b"2.0.0" in msg
    assert s.quit()[0] == 221
    check_seed_delivery(t, "SMTP")
    m = t.wait_log(r"(\w{16}) smtp accepted msgid=(\w+) client=127\.0\.0\.1 from=<mrose@dbc\.mtview\.ca\.us> "
                   r"to=<nsb@thumper\.bellcore\.com> to=<galvin@tis\.com> to=<pvm@darpa\.mil> size=(\d+) result=\"250 2\.0\.0\"")
    assert int(m.group(3)) > len(SEED_MESSAGE) - 20


def test_seed_transcript_raw_lines(make_tern, lines_client):
    t = make_tern(domains=SEED_DOMAINS, users=SEED_USERS)
    c = lines_client(t, greet=False)
    code, l = c.reply()
    assert code == 220 and l[0].startswith("220 mx.example.org ")
    assert c.cmd("HELO baiji.dbc.mtview.ca.us")[0] == 250
    assert c.cmd("MAIL FROM:<mrose@dbc.mtview.ca.us>") == (250, ["250 2.1.0 Ok"])
    for r in SEED_RCPTS:
        assert c.cmd(f"RCPT TO:<{r}>") == (250, ["250 2.1.5 Ok"])
    code, l = c.cmd("DATA")
    assert code == 354
    c.send(SEED_MESSAGE + ".\r\n")
    code, l = c.reply()
    assert code == 250 and l[0].startswith("250 2.0.0 Ok: queued as "), l
    code, l = c.cmd("QUIT")
    assert code == 221 and "2.0.0" in l[0]
    assert c.closed()
    check_seed_delivery(t, "SMTP")


def test_ehlo_keywords(tern, lines_client):
    c = lines_client(tern)
    code, l = c.cmd("EHLO client.example.com")
    assert code == 250
    assert l[0] == "250-mx.example.org"
    kw = {x[4:].split(" ")[0] for x in l[1:]}
    for k in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS", "SMTPUTF8",
              "CHUNKING"):
        assert k in kw, l
    size = [x for x in l if x[4:].startswith("SIZE ")][0]
    assert int(size.split()[-1]) == 50 * 1024 * 1024


def test_unknown_and_obsolete_commands(tern, lines_client):
    c = lines_client(tern)
    assert c.cmd("EHLO c.example")[0] == 250
    for verb in ("SEND FROM:<a@b>", "SOML FROM:<a@b>", "SAML FROM:<a@b>", "TURN"):
        code, l = c.cmd(verb)
        assert code == 502, (verb, l)
        assert "5.5.1" in l[0]
    code, l = c.cmd("FROB")
    assert code == 500 and "5.5.2" in l[0]
    assert c.cmd("VRFY alice")[0] == 252
    assert c.cmd("EXPN staff")[0] in (252, 502)
    code, l = c.cmd("HELP")
    assert code == 214
    assert c.cmd("NOOP") == (250, ["250 2.0.0 Ok"])
    assert c.cmd("RSET")[0] == 250


def test_pipelining_in_order(tern, lines_client):
    c = lines_client(tern)
    assert c.cmd("EHLO c.example")[0] == 250
    c.send("MAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\n"
           "RCPT TO:<bob@example.org>\r\nDATA\r\n")
    assert c.reply()[0] == 250
    assert c.reply()[0] == 250
    code, l = c.reply()
    assert code == 550 and "5.1.1" in l[0]
    assert c.reply()[0] == 250
    assert c.reply()[0] == 354
    c.send("Subject: pipelined\r\n\r\nhello\r\n.\r\nMAIL FROM:<y@remote.test>\r\nRCPT TO:<alice@example.org>\r\n"
           "DATA\r\n")
    assert c.reply()[0] == 250
    assert c.reply()[0] == 250
    assert c.reply()[0] == 250
    assert c.reply()[0] == 354
    c.send("Subject: second\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
    assert c.reply()[0] == 250
    assert c.reply()[0] == 221
    a = tern.read_messages("alice@example.org")
    assert len(a) == 2
    assert len(tern.read_messages("bob@example.org")) == 1
    second = [m for m in a if b"Subject: second" in m][0]
    assert second.endswith(b"\n\n.dot\n"), "dot-stuffing removed"


def test_bdat_chunking(tern, lines_client):
    c = lines_client(tern)
    assert c.cmd("EHLO c.example")[0] == 250
    assert c.cmd("MAIL FROM:<x@remote.test> BODY=8BITMIME")[0] == 250
    assert c.cmd("RCPT TO:<alice@example.org>")[0] == 250
    part1 = b"Subject: chunks\r\n\r\nfirst line\r"
    part2 = b"\nsecond line with . at start:\r\n.not stuffed\r\n"
    c.send(b"BDAT %d\r\n" % len(part1) + part1)
    code, l = c.reply()
    assert code == 250, l
    c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
    code, l = c.reply()
    assert code == 250 and "queued" in l[0], l
    m = tern.read_messages("alice@example.org")
    assert len(m) == 1
    assert m[0].endswith(b"Subject: chunks\n\nfirst line\nsecond line with . at start:\n.not stuffed\n")
    # DATA after BDAT in one transaction is out of sequence; BDAT 0 LAST works
    assert c.cmd("MAIL FROM:<x@remote.test>")[0] == 250
    assert c.cmd("RCPT TO:<bob@example.org>")[0] == 250
    c.send(b"BDAT 10\r\nSubject: z")
    assert c.reply()[0] == 250
    assert c.cmd("DATA")[0] == 503
    code, l = c.cmd("BDAT 0 LAST")
    assert code == 250 and "queued" in l[0]
    assert tern.read_messages("bob@example.org")[0].endswith(b"Subject: z")


def test_bdat_with_smtplib_pipelined(tern):
    """BDAT announced in one write with its data and further commands."""
    c = Lines(tern.connect())
    assert c.reply()[0] == 220
    assert c.cmd("EHLO c.example")[0] == 250
    body = b"Subject: p\r\n\r\n" + b"x" * 5000 + b"\r\n"
    c.send(b"MAIL FROM:<>\r\nRCPT TO:<bob@example.org>\r\nBDAT %d LAST\r\n" % len(body) + body + b"NOOP\r\n")
    assert [c.reply()[0] for _ in range(4)] == [250, 250, 250, 250]
    assert tern.read_messages("bob@example.org")[0].startswith(b"Return-Path: <>\n")


def test_starttls_and_esmtps(tern):
    s = smtplib.SMTP("127.0.0.1", tern.smtp_port, local_hostname="tls.example", timeout=10)
    s.ehlo()
    assert s.has_extn("starttls")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    code, _ = s.starttls(context=ctx)
    assert code == 220
    assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
    s.ehlo()
    assert not s.has_extn("starttls"), "STARTTLS is not offered again under TLS"
    s.sendmail("x@remote.test", ["alice@example.org"], "Subject: tls\r\n\r\nsecret\r\n")
    s.quit()
    m = tern.read_messages("alice@example.org")[0]
    assert b"with ESMTPS id" in m
    tern.wait_log(r"smtp starttls version=TLSv1\.[23]")


def test_starttls_command_injection(tern):
    """Bytes pipelined after STARTTLS must be discarded, not run under TLS."""
    sock = tern.connect()
    c = Lines(sock)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO c.example")[0] == 250
    c.send("STARTTLS\r\nRSET\r\nMAIL FROM:<evil@remote.test>\r\n")
    code, l = c.reply()
    assert code == 220
    assert c.buf == b""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ctx.wrap_socket(sock, server_hostname="mx.example.org")
    t = Lines(tls)
    # nothing may arrive for the injected commands; the first reply is to our NOOP
    code, l = t.cmd("NOOP")
    assert (code, l) == (250, ["250 2.0.0 Ok"])
    # and the session was reset: MAIL needs a new EHLO
    assert t.cmd("MAIL FROM:<a@remote.test>")[0] == 503
    tls.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_policy_versions(tern):
    sock = tern.connect()
    c = Lines(sock)
    c.reply()
    c.cmd("EHLO c.example")
    c.cmd("STARTTLS")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
        ctx.wrap_socket(sock, server_hostname="mx.example.org")
    sock.close()


def test_size_limits(make_tern, lines_client):
    t = make_tern("max_message_size = 2048\n")
    c = lines_client(t)
    code, l = c.cmd("EHLO c.example")
    assert "250-SIZE 2048" in l
    code, l = c.cmd("MAIL FROM:<x@remote.test> SIZE=4096")
    assert code == 552 and "5.3.4" in l[0]
    assert c.cmd("MAIL FROM:<x@remote.test> SIZE=100")[0] == 250
    assert c.cmd("RCPT TO:<alice@example.org>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: big\r\n\r\n" + ("y" * 70 + "\r\n") * 100 + ".\r\n")
    code, l = c.reply()
    assert code == 552 and "5.3.4" in l[0]
    assert t.messages("alice@example.org") == []
    assert os.listdir(os.path.join(t.maildir("alice@example.org"), "tmp")) == []
    # the session goes on
    assert c.cmd("NOOP")[0] == 250
    t.wait_log(r"smtp refused client=127\.0\.0\.1 from=<x@remote\.test> result=\"552")


@pytest.mark.parametrize("rcpt,code,esc", [
    ("someone@remote.test", 554, "5.7.1"),
    ("alice@example.org.evil.test", 554, "5.7.1"),
    ("@example.org:someone@remote.test", 554, "5.7.1"),       # source route to a remote host
    ("someone%remote.test@example.org", 550, "5.1.1"),         # % hack
    ("remote.test!someone@example.org", 550, "5.1.1"),         # bang path
    ("\"someone@remote.test\"@example.org", 550, "5.1.1"),     # quoted local part
    ("alice@[127.0.0.1]", 554, "5.7.1"),                       # address literal
    ("nobody@example.org", 550, "5.1.1"),
])
def test_relay_refused_and_unknown(tern, lines_client, rcpt, code, esc):
    c = lines_client(tern)
    c.cmd("EHLO c.example")
    assert c.cmd("MAIL FROM:<x@remote.test>")[0] == 250
    got, l = c.cmd(f"RCPT TO:<{rcpt}>")
    assert (got, l[0].split()[1]) == (code, esc), l
    assert c.cmd("DATA")[0] == 503   # no valid recipients
    for sub in ("new", "tmp"):
        assert tern.messages("alice@example.org", sub) == []


def test_quoted_local_part_without_need_for_quotes(tern, lines_client):
    """RFC 5321 4.1.2: "alice"@example.org is alice@example.org."""
    c = lines_client(tern)
    c.cmd("EHLO c.example")
    c.cmd("MAIL FROM:<x@remote.test>")
    assert c.cmd('RCPT TO:<"alice"@example.org>')[0] == 250
    assert c.cmd('RCPT TO:<"b\\ob"@example.org>')[0] == 250
    assert c.cmd('RCPT TO:<"al ice"@example.org>')[0] == 550
    assert c.cmd('RCPT TO:<".alice"@example.org>')[0] == 550
    c.cmd("DATA")
    c.send("Subject: q\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    assert len(tern.read_messages("alice@example.org")) == 1
    assert len(tern.read_messages("bob@example.org")) == 1


def test_source_route_to_local_is_accepted(tern, lines_client):
    c = lines_client(tern)
    c.cmd("EHLO c.example")
    c.cmd("MAIL FROM:<@relay.test:x@remote.test>")
    assert c.cmd("RCPT TO:<@a.test,@b.test:Alice@Example.ORG>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: routed\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    assert len(tern.read_messages("alice@example.org")) == 1


def test_postmaster_and_aliases(make_tern, lines_client):
    t = make_tern(start=False)
    t.cli("alias", "add", "team@example.org", "alice@example.org", "bob@example.org")
    t.cli("alias", "add", "all@example.net", "team@example.org")
    t.start()
    c = lines_client(t)
    c.cmd("EHLO c.example")
    c.cmd("MAIL FROM:<x@remote.test>")
    assert c.cmd("RCPT TO:<Postmaster>")[0] == 250           # RFC 5321 4.5.1, no domain
    assert c.cmd("RCPT TO:<postmaster@example.net>")[0] == 250
    assert c.cmd("RCPT TO:<ALL@example.NET>")[0] == 250
    assert c.cmd("RCPT TO:<Bob@EXAMPLE.org>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: fanout\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    # postmaster goes to the first account; every account gets one copy only
    assert len(t.read_messages("alice@example.org")) == 1
    assert len(t.read_messages("bob@example.org")) == 1


def test_postmaster_alias(make_tern, lines_client):
    t = make_tern(start=False)
    t.cli("alias", "add", "postmaster@example.org", "bob@example.org")
    t.start()
    c = lines_client(t)
    c.cmd("HELO c.example")
    c.cmd("MAIL FROM:<>")
    assert c.cmd("RCPT TO:<postmaster@example.org>")[0] == 250
    c.cmd("DATA")
    c.send("Subject: pm\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    assert len(t.read_messages("bob@example.org")) == 1
    assert t.read_messages("alice@example.org") == []


def test_bad_input(tern, lines_client):
    c = lines_client(tern)
    assert c.cmd("MAIL FROM:<x@remote.test>")[0] == 503          # before HELO
    assert c.cmd("EHLO")[0] == 501                               # missing domain
    assert c.cmd("EHLO c.example")[0] == 250
    assert c.cmd("RCPT TO:<alice@example.org>")[0] == 503        # before MAIL
    assert c.cmd("DATA")[0] == 503
    assert c.cmd("MAIL FROM:x@remote.test")[0] == 501            # no brackets
    assert c.cmd("MAIL FROM:<x@remote.test> FROB=1")[0] == 555
    assert c.cmd("MAIL TO:<x@remote.test>")[0] == 501
    assert c.cmd("MAIL FROM:<x@remote.test>")[0] == 250
    assert c.cmd("MAIL FROM:<x@remote.test>")[0] == 503          # nested MAIL
    assert c.cmd("RCPT TO:<a b@example.org>")[0] == 501
    code, l = c.cmd("NOOP " + "z" * 5000)
    assert code == 500 and "5.5.2" in l[0]                        # overlong line
    assert c.cmd("NOOP") == (250, ["250 2.0.0 Ok"])               # the session goes on
    code, l = c.cmd("NO\x00OP")
    assert code in (500, 501)
    assert c.cmd("RSET")[0] == 250


def test_nul_and_bare_lf_in_data(tern, lines_client):
    c = lines_client(tern)
    c.cmd("EHLO c.example")
    c.cmd("MAIL FROM:<x@remote.test>")
    c.cmd("RCPT TO:<alice@example.org>")
    c.cmd("DATA")
    c.send(b"Subject: nul\r\n\r\nbad\x00byte\r\n.\r\n")
    code, l = c.reply()
    assert code == 554 and "5.6.0" in l[0], l
    assert tern.messages("alice@example.org") == []
    # bare LF: never ends the data ("\n.\n" is content), stored as a line end
    c.cmd("MAIL FROM:<x@remote.test>")
    c.cmd("RCPT TO:<alice@example.org>")
    c.cmd("DATA")
    c.send(b"Subject: lf\r\n\r\none\ntwo\n.\nthree\r\n.\r\n")
    code, l = c.reply()
    assert code == 250, l
    m = tern.read_messages("alice@example.org")[0]
    assert m.endswith(b"Subject: lf\n\none\ntwo\n.\nthree\n")


@pytest.mark.parametrize("smuggle", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r"])
def test_smtp_smuggling_forms(tern, lines_client, smuggle):
    c = lines_client(tern)
    c.cmd("EHLO c.example")
    c.cmd("MAIL FROM:<x@remote.test>")
    c.cmd("RCPT TO:<alice@example.org>")
    c.cmd("DATA")
    c.send(b"Subject: outer\r\n\r\nbody" + smuggle +
           b"MAIL FROM:<admin@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n")
    code, l = c.reply()
    assert code == 250
    assert c.cmd("NOOP")[0] == 250     # exactly one reply for the whole thing
    assert tern.read_messages("bob@example.org") == []
    assert len(tern.read_messages("alice@example.org")) == 1


def test_utf8_addresses(tern, lines_client):
    c = lines_client(tern)
    c.cmd("EHLO c.example")
    code, l = c.cmd("MAIL FROM:<jörg@remote.test>")
    assert code == 553 and "5.6.7" in l[0]
    assert c.cmd("MAIL FROM:<jörg@remote.test> SMTPUTF8")[0] == 250
    assert c.cmd("RCPT TO:<alice@example.org>")[0] == 250
    c.cmd("DATA")
    c.send("Subject: Grüße\r\n\r\nä\r\n.\r\n")
    assert c.reply()[0] == 250
    m = tern.read_messages("alice@example.org")[0]
    assert "Return-Path: <jörg@remote.test>".encode() in m
    assert b"with UTF8SMTP" in m or b"with ESMTP" in m


def test_write_failure_gives_451_and_no_partial_copy(tern, lines_client):
    # bob's Maildir cannot take files: tmp/ is replaced by a plain file
    tmp = os.path.join(tern.maildir("bob@example.org"), "tmp")
    os.rmdir(tmp)
    with open(tmp, "w") as f:
        f.write("not a directory")
    c = lines_client(tern)
    c.cmd("EHLO c.example")
    c.cmd("MAIL FROM:<x@remote.test>")
    assert c.cmd("RCPT TO:<alice@example.org>")[0] == 250
    assert c.cmd("RCPT TO:<bob@example.org>")[0] == 250
    code, l = c.cmd("DATA")
    if code == 354:
        c.send("Subject: x\r\n\r\nx\r\n.\r\n")
        code, l = c.reply()
    assert code == 451 and "4.3.0" in l[0], l
    assert tern.messages("alice@example.org") == []
    assert os.listdir(os.path.join(tern.maildir("alice@example.org"), "tmp")) == []
    assert c.cmd("RSET")[0] == 250


def test_smtplib_many_messages(tern):
    s = smtplib.SMTP("127.0.0.1", tern.smtp_port, timeout=10)
    for i in range(30):
        s.sendmail("x@remote.test", ["alice@example.org", "bob@example.org"],
                   f"Subject: n{i}\r\n\r\nbody {i}\r\n")
    s.quit()
    assert len(tern.messages("alice@example.org")) == 30
    assert len(tern.messages("bob@example.org")) == 30


def test_swaks_starttls_pipelining(tern):
    """A second real client: swaks with STARTTLS and pipelining."""
    import shutil
    import subprocess
    swaks = shutil.which("swaks")
    if not swaks:
        pytest.fail("swaks is not installed (tools/deps.sh installs it)")
    p = subprocess.run([swaks, "--server", f"127.0.0.1:{tern.smtp_port}", "--tls", "--pipeline",
                        "--from", "sender@remote.test", "--to", "alice@example.org,bob@example.org",
                        "--helo", "swaks.example", "--header", "Subject: from swaks",
                        "--body", "hello from swaks\n.leading dot\n"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "250 2.0.0 Ok: queued as" in p.stdout
    for who in ("alice@example.org", "bob@example.org"):
        m = tern.read_messages(who)
        assert len(m) == 1
        assert b"Subject: from swaks" in m[0]
        assert b"\n.leading dot" in m[0]
        assert b"with ESMTPS id" in m[0]


def test_half_close_after_final_dot_still_gets_250(tern, lines_client):
    """A client that sends the end of data and FIN in one flight still gets its
    reply (otherwise it would retry and the message would arrive twice)."""
    c = lines_client(tern)
    c.cmd("EHLO c.example")
    c.cmd("MAIL FROM:<x@remote.test>")
    c.cmd("RCPT TO:<alice@example.org>")
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: fin\r\n\r\nbye\r\n.\r\nQUIT\r\n")
    c.sock.shutdown(socket.SHUT_WR)
    code, l = c.reply()
    assert code == 250 and "queued" in l[0], l
    assert c.reply()[0] == 221
    assert c.closed()
    assert len(tern.read_messages("alice@example.org")) == 1

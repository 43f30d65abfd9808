"""Self-tests of the loopback test network (mailnet.py): the DNS server is
queried with hand-made RFC 1035 messages and its answers decoded here by a
separate minimal parser; the SMTP sinks are driven with smtplib (STARTTLS,
AUTH) and raw sockets (scripted replies, BDAT, pipelining)."""
import smtplib
import socket
import ssl
import struct

import pytest

from mailnet import DnsServer, Mailnet


# ---- a deliberately separate DNS client: builds queries byte by byte ----

def make_query(qid, name, qtype, rd=True):
    q = struct.pack("!HHHHHH", qid, 0x0100 if rd else 0, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", qtype, 1)


def decode_name(msg, off):
    labels, jumped, end = [], False, off
    for _ in range(128):
        n = msg[off]
        if n >= 0xC0:
            if not jumped:
                end = off + 2
            jumped = True
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        if n == 0:
            return ".".join(labels), (end if jumped else off + 1)
        labels.append(msg[off + 1:off + 1 + n].decode())
        off += 1 + n
    raise AssertionError("pointer loop")


def parse(msg):
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", msg[:12])
    off = 12
    qname, off = decode_name(msg, off)
    qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
    off += 4
    answers = []
    for _ in range(an):
        owner, off = decode_name(msg, off)
        rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        rd = msg[off:off + rdlen]
        if rtype == 1:
            val = socket.inet_ntop(socket.AF_INET, rd)
        elif rtype == 28:
            val = socket.inet_ntop(socket.AF_INET6, rd)
        elif rtype == 15:
            val = (struct.unpack("!H", rd[:2])[0], decode_name(msg, off + 2)[0])
        elif rtype == 5:
            val = decode_name(msg, off)[0]
        else:
            val = rd
        answers.append((owner, rtype, rclass, ttl, val))
        off += rdlen
    assert off == len(msg), "trailing bytes"
    return {"id": qid, "qr": flags >> 15, "aa": (flags >> 10) & 1, "rd": (flags >> 8) & 1,
            "rcode": flags & 0xF, "qname": qname, "qtype": qtype, "answers": answers}


def udp_ask(server, name, qtype, qid=0x1234, timeout=2):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(make_query(qid, name, qtype), (server.host, server.port))
        data, _ = s.recvfrom(65535)
    finally:
        s.close()
    r = parse(data)
    assert r["id"] == qid and r["qr"] == 1
    return r, data


def tcp_ask(server, name, qtype, qid=0x4321):
    s = socket.create_connection((server.host, server.port), timeout=2)
    try:
        q = make_query(qid, name, qtype)
        s.sendall(struct.pack("!H", len(q)) + q)
        n = struct.unpack("!H", s.recv(2, socket.MSG_WAITALL))[0]
        data = s.recv(n, socket.MSG_WAITALL)
    finally:
        s.close()
    return parse(data), data


A, MX, AAAA, CNAME = 1, 15, 28, 5


@pytest.fixture
def dns():
    d = DnsServer({
        "remote.test": {"MX": [(20, "mx2.remote.test"), (10, "mx1.remote.test")], "ttl": 60},
        "mx1.remote.test": {"A": ["127.0.0.2"], "AAAA": ["::1"]},
        "mx2.remote.test": {"A": ["127.0.0.3", "127.0.0.4"]},
        "null.test": {"MX": [(0, ".")]},
        "gone.test": "NXDOMAIN",
        "broken.test": "SERVFAIL",
        "silent.test": "DROP",
        "alias.test": {"CNAME": "mx1.remote.test"},
        "flaky.test": {"MX": "SERVFAIL", "A": ["127.0.0.9"]},
        "deep.sub.zone.test": {"A": ["127.0.0.5"]},
    })
    yield d
    assert d.errors == []
    d.close()


def test_dns_mx_with_compression(dns):
    r, raw = udp_ask(dns, "Remote.TEST", MX)
    assert r["rcode"] == 0 and r["aa"] == 1 and r["rd"] == 1
    assert r["qname"] == "Remote.TEST"  # question echoed as asked
    # compression is case-insensitive (as in common servers): the exchanges'
    # "remote.test" points into the question and so comes back as "Remote.TEST"
    assert [(a[3], a[4]) for a in r["answers"]] == [(60, (20, "mx2.Remote.TEST")),
                                                    (60, (10, "mx1.Remote.TEST"))]
    # owners point at the question (offset 12), and the exchanges reuse "remote.test"
    assert raw.count(b"\xc0\x0c") >= 3
    assert raw.lower().count(b"remote") == 1


def test_dns_a_aaaa_and_no_data(dns):
    r, _ = udp_ask(dns, "mx2.remote.test", A)
    assert [a[4] for a in r["answers"]] == ["127.0.0.3", "127.0.0.4"]
    assert all(a[1] == A and a[2] == 1 and a[3] == 300 for a in r["answers"])
    r, _ = udp_ask(dns, "mx1.remote.test", AAAA)
    assert [a[4] for a in r["answers"]] == ["::1"]
    r, _ = udp_ask(dns, "mx2.remote.test", AAAA)  # name exists, no AAAA: NOERROR, no data
    assert r["rcode"] == 0 and r["answers"] == []
    r, _ = udp_ask(dns, "sub.zone.test", A)  # empty non-terminal
    assert r["rcode"] == 0 and r["answers"] == []


def test_dns_rcodes_and_null_mx(dns):
    assert udp_ask(dns, "gone.test", MX)[0]["rcode"] == 3
    assert udp_ask(dns, "nothing.here.test", A)[0]["rcode"] == 3
    assert udp_ask(dns, "broken.test", A)[0]["rcode"] == 2
    r, _ = udp_ask(dns, "flaky.test", MX)
    assert r["rcode"] == 2
    r, _ = udp_ask(dns, "flaky.test", A)
    assert r["rcode"] == 0 and r["answers"][0][4] == "127.0.0.9"
    r, raw = udp_ask(dns, "null.test", MX)
    assert [a[4] for a in r["answers"]] == [(0, "")]
    assert raw.endswith(b"\x00\x00\x00")  # preference 0, then the root name


def test_dns_drop_never_answers(dns):
    with pytest.raises(socket.timeout):
        udp_ask(dns, "silent.test", MX, timeout=0.5)
    assert dns.count("silent.test", "MX") == 1


def test_dns_cname_followed(dns):
    r, _ = udp_ask(dns, "alias.test", A)
    assert [(a[0], a[1], a[4]) for a in r["answers"]] == [
        ("alias.test", CNAME, "mx1.remote.test"), ("mx1.remote.test", A, "127.0.0.2")]


def test_dns_tcp_and_counts_and_changes(dns):
    r, _ = tcp_ask(dns, "remote.test", MX)
    assert r["id"] == 0x4321 and len(r["answers"]) == 2
    udp_ask(dns, "remote.test", MX)
    udp_ask(dns, "remote.test", A)
    assert dns.count("remote.test", "MX") == 2
    assert dns.count("REMOTE.test.") == 3
    assert ("tcp", "remote.test", "MX") in dns.log
    dns.set("remote.test", {"MX": [(5, "mx2.remote.test")]})
    r, _ = udp_ask(dns, "remote.test", MX)
    assert [a[4] for a in r["answers"]] == [(5, "mx2.remote.test")]
    dns.remove("remote.test")  # still the parent of mx1.remote.test: no data
    r, _ = udp_ask(dns, "remote.test", MX)
    assert r["rcode"] == 0 and r["answers"] == []
    dns.remove("mx1.remote.test")
    dns.remove("mx2.remote.test")
    assert udp_ask(dns, "remote.test", MX)[0]["rcode"] == 3
    dns.reset_counts()
    assert dns.count("remote.test") == 0


def test_dns_malformed_gets_formerr(dns):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3fabc", (dns.host, dns.port))
    data, _ = s.recvfrom(512)
    s.close()
    assert data[:2] == b"\xab\xcd" and data[3] & 0xF == 1
    assert len(dns.errors) == 1
    dns.errors.clear()


# ---- SMTP sinks ----

def tls_client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture
def net():
    n = Mailnet()
    yield n
    for s in n.sinks:
        assert s.errors == []
    n.close()


def test_sink_records_starttls_transaction(net):
    s = net.sink(port=0)
    with smtplib.SMTP(s.host, s.port, local_hostname="client.test", timeout=10) as c:
        c.ehlo()
        assert c.has_extn("starttls") and c.has_extn("pipelining") and c.has_extn("smtputf8")
        c.starttls(context=tls_client_ctx())
        c.ehlo()
        assert not c.has_extn("starttls")
        c.sendmail("a@client.test", ["x@sink.test", "y@sink.test"],
                   b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n",
                   mail_options=["BODY=8BITMIME"], rcpt_options=["NOTIFY=FAILURE"])
    (t,) = s.wait_for(1)
    assert t.tls and t.conn.tls_version.startswith("TLS")
    assert t.helo == "client.test" and t.mail_from == "a@client.test"
    assert t.mail_params == {"BODY": "8BITMIME", "SIZE": t.mail_params["SIZE"]}
    assert t.rcpts == [("x@sink.test", {"NOTIFY": "FAILURE"}), ("y@sink.test", {"NOTIFY": "FAILURE"})]
    assert t.data == b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n"
    assert t.via == "DATA" and t.reply == 250
    s.wait_closed()
    assert len(s.conns) == 1 and not s.conns[0].injected


def test_sink_scripted_replies(net):
    s = net.sink(port=0)
    s.on("RCPT", "451 4.3.0 try later", times=2, match="slow@")
    s.on("RCPT", "550 5.1.1 no such user", match="bad@")
    s.on("EOM", "554 5.6.0 rejected", times=1)
    for attempt in range(3):
        with smtplib.SMTP(s.host, s.port, timeout=10) as c:
            refused = {}
            try:
                refused = c.sendmail("a@c.test", ["slow@s.test", "bad@s.test", "ok@s.test"], b"x\r\n")
            except smtplib.SMTPDataError as e:
                assert attempt == 0 and e.smtp_code == 554
                continue
            codes = {k: v[0] for k, v in refused.items()}
            if attempt == 1:
                assert codes == {"slow@s.test": 451, "bad@s.test": 550}
            else:
                assert codes == {"bad@s.test": 550}
    txns = s.wait_txns(3)
    assert [t.accepted for t in txns] == [False, True, True]
    assert txns[0].reply == 554 and txns[2].rcpt_addrs == ["slow@s.test", "ok@s.test"]
    assert txns[1].rejected == [("slow@s.test", 451), ("bad@s.test", 550)]
    # smtplib RSETs after a DATA error
    assert s.conns[0].replies[-4:] == [("DATA", 354), ("EOM", 554), ("RSET", 250), ("QUIT", 221)]


def test_sink_greeting_close_and_hang(net):
    s = net.sink(port=0)
    s.on("CONNECT", "421 4.3.2 busy", times=1)
    s.on("CONNECT", "close", times=1)
    s.on("CONNECT", "hang", times=1)
    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP(s.host, s.port, timeout=5)
    assert e.value.smtp_code == 421
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtplib.SMTP(s.host, s.port, timeout=5)
    c = socket.create_connection((s.host, s.port), timeout=0.5)
    with pytest.raises(socket.timeout):
        c.recv(100)
    c.close()
    smtplib.SMTP(s.host, s.port, timeout=5).quit()  # rules used up: normal again
    s.wait_closed()


def test_sink_peak_connections(net):
    s = net.sink(port=0)
    socket.create_connection((s.host, s.port), timeout=5).close()
    s.wait_closed()
    assert s.peak_conns() == 1
    a = socket.create_connection((s.host, s.port), timeout=5)
    b = socket.create_connection((s.host, s.port), timeout=5)
    s.wait_conns(3)
    assert s.peak_conns() == 2
    a.close()
    b.close()
    s.wait_closed()
    socket.create_connection((s.host, s.port), timeout=5).close()
    s.wait_closed(n=4)
    assert s.peak_conns() == 2


def test_sink_hang_on_eom_holds_message(net):
    s = net.sink(port=0)
    s.on("EOM", "hang", times=1)
    c = smtplib.SMTP(s.host, s.port, timeout=0.5)
    with pytest.raises((socket.timeout, smtplib.SMTPServerDisconnected)):
        c.sendmail("a@c.test", ["b@s.test"], b"held\r\n")
    (t,) = s.wait_data(1)
    assert t.data == b"held\r\n" and t.reply is None and not t.accepted
    c.close()
    s.wait_closed()
    assert s.messages == []


def test_sink_auth_only_after_starttls(net):
    s = net.sink(port=0, auth={"relay": "s3cret"}, require_auth=True)
    with smtplib.SMTP(s.host, s.port, timeout=10) as c:
        c.ehlo()
        assert not c.has_extn("auth")
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            c.sendmail("a@c.test", ["b@s.test"], b"x\r\n")
        assert e.value.smtp_code == 530
        c.rset()
        c.starttls(context=tls_client_ctx())
        c.ehlo()
        assert c.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        with pytest.raises(smtplib.SMTPAuthenticationError):
            c.login("relay", "wrong")
    with smtplib.SMTP(s.host, s.port, timeout=10) as c:
        c.starttls(context=tls_client_ctx())
        c.login("relay", "s3cret")  # smtplib tries CRAM-MD5, then PLAIN
        c.sendmail("a@c.test", ["b@s.test"], b"x\r\n")
    (t,) = s.wait_for(1)
    assert t.auth == "relay" and t.tls
    with smtplib.SMTP(s.host, s.port, timeout=10) as c:
        c.starttls(context=tls_client_ctx())
        c.ehlo()
        c.user, c.password = "relay", "s3cret"
        code, _ = c.auth("LOGIN", c.auth_login, initial_response_ok=False)
        assert code == 235


def test_sink_bdat_and_pipelining(net):
    s = net.sink(port=0, caps=("PIPELINING", "CHUNKING", "8BITMIME"))
    c = socket.create_connection((s.host, s.port), timeout=5)
    f = c.makefile("rb")
    assert f.readline().startswith(b"220 ")
    c.sendall(b"EHLO raw.test\r\nMAIL FROM:<> BODY=8BITMIME\r\nRCPT TO:<b@s.test>\r\n"
              b"BDAT 5\r\nhel\xc3\xa9BDAT 2 LAST\r\n\r\nQUIT\r\n")
    lines = f.read().split(b"\r\n")
    assert s.conns[0].pipelined[:3] == ["EHLO raw.test", "MAIL FROM:<> BODY=8BITMIME",
                                        "RCPT TO:<b@s.test>"]
    codes = [l[:4] for l in lines if l]
    assert codes[0] == b"250-"  # multi-line EHLO reply
    assert codes[-5:] == [b"250 ", b"250 ", b"250 ", b"250 ", b"221 "]
    c.close()
    (t,) = s.wait_for(1)
    assert t.mail_from == "" and t.mail_params == {"BODY": "8BITMIME"}
    assert t.data == "helé\r\n".encode() and t.via == "BDAT"


def test_sink_plaintext_after_starttls_is_flagged(net):
    s = net.sink(port=0)
    c = socket.create_connection((s.host, s.port), timeout=5)
    f = c.makefile("rb")
    f.readline()
    c.sendall(b"EHLO x\r\n")
    while f.readline()[3:4] == b"-":
        pass
    c.sendall(b"STARTTLS\r\nRSET\r\n")  # RFC 3207 5: the RSET must be discarded
    assert f.readline().startswith(b"220 ")
    t = tls_client_ctx().wrap_socket(c)
    t.sendall(b"QUIT\r\n")
    assert t.recv(100).startswith(b"221")
    t.close()
    s.wait_closed()
    assert s.conns[0].injected and s.conns[0].commands == ["EHLO x", "STARTTLS", "QUIT"]


def test_mx_sinks_on_own_addresses(net):
    a, b = net.sink(name="a.test"), net.sink(name="b.test")
    assert a.port == b.port == net.mx_port and a.host != b.host
    net.mx("dom.test", a, (5, b))
    r, _ = udp_ask(net.dns, "dom.test", MX)
    assert sorted(x[4] for x in r["answers"]) == [(5, "mx2.dom.test"), (10, "mx1.dom.test")]
    r, _ = udp_ask(net.dns, "mx2.dom.test", A)
    assert r["answers"][0][4] == b.host
    with smtplib.SMTP(b.host, b.port, timeout=5) as c:
        assert c.ehlo()[1].startswith(b"b.test")
    # an address handed out but not listened on refuses connections (a host that is down)
    down = net.free_address()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((down, net.mx_port), timeout=2)


def test_mx_sinks_on_a_high_port():
    """Without root, MX sinks share one high port (Tern: relay_mx_port)."""
    with Mailnet(mx_port=0) as n:  # 0: each sink an ephemeral port (only for this check)
        s = n.sink()
        assert s.port != 25 and s.host.startswith("127.")
        with smtplib.SMTP(s.host, s.port, timeout=5) as c:
            assert c.noop()[0] == 250

"""Server lifecycle (issue 2): start-up errors, SIGTERM with a transaction in
flight, kill -9 right after 250, SIGHUP reload, limits, timeouts, privilege
drop and the demo account."""
import os
import pwd
import shutil
import tempfile
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import TERN, Lines, Tern


def start_fails(t):
    p = subprocess.run([TERN, "serve", "-c", t.conf], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    return p.stderr


def test_sigterm_finishes_transaction_in_flight(tern, lines_client):
    c = lines_client(tern)
    c.cmd("EHLO c.example")
    c.cmd("MAIL FROM:<x@remote.test>")
    c.cmd("RCPT TO:<alice@example.org>")
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: in flight\r\n\r\nfirst half\r\n")
    time.sleep(0.2)
    idle = lines_client(tern)            # an idle session is told to go away
    start = len(tern.lines)
    tern.signal(signal.SIGTERM)
    tern.wait_log(r"received SIGTERM", start=start)
    code, l = idle.reply()
    assert code == 421, l
    # new connections are no longer accepted
    with pytest.raises(OSError):
        s = socket.create_connection(("127.0.0.1", tern.smtp_port), timeout=2)
        s.settimeout(2)
        if not s.recv(100):
            raise ConnectionResetError("closed")
    c.send("second half\r\n.\r\n")
    code, l = c.reply()
    assert code == 250, l
    code, l = c.reply()
    assert code == 421
    assert c.closed()
    assert tern.proc.wait(20) == 0
    m = tern.read_messages("alice@example.org")
    assert len(m) == 1 and m[0].endswith(b"first half\nsecond half\n")


def test_kill9_right_after_250_loses_nothing(tern, lines_client):
    c = lines_client(tern)
    c.cmd("EHLO c.example")
    ids = []
    for i in range(5):
        c.cmd("MAIL FROM:<x@remote.test>")
        c.cmd("RCPT TO:<alice@example.org>")
        c.cmd("DATA")
        c.send(f"Subject: durable {i}\r\n\r\nbody\r\n.\r\n")
        code, l = c.reply()
        assert code == 250
        ids.append(l[0].split()[-1])
    tern.proc.kill()
    tern.proc.wait(10)
    msgs = tern.read_messages("alice@example.org")
    assert len(msgs) == 5
    for i, m in enumerate(sorted(msgs, key=lambda m: m.split(b"Subject: durable ")[1][:1])):
        assert b"Subject: durable %d\n" % i in m
        assert m.endswith(b"\n\nbody\n")
    # nothing half-written left behind
    assert os.listdir(os.path.join(tern.maildir("alice@example.org"), "tmp")) == []
    # restart works on the same data
    t2 = Tern.__new__(Tern)
    t2.__dict__.update(tern.__dict__)
    t2.proc = None
    t2.lines = []
    t2.ports = {}
    t2.start()
    assert t2.smtp_port
    assert t2.stop() == 0


def test_sighup_reload_keeps_connections(make_tern, lines_client):
    t = make_tern()
    c = lines_client(t)
    c.cmd("EHLO c.example")
    c.cmd("MAIL FROM:<x@remote.test>")
    assert c.cmd("RCPT TO:<carol@new.test>")[0] == 554
    t.write_conf(t.base_conf.replace("example.org example.net", "example.org example.net new.test"))
    t.cli("user", "add", "carol@new.test", password="carolpw")
    start = len(t.lines)
    t.signal(signal.SIGHUP)
    t.wait_log(r"reloaded", start=start)
    # the old session is still connected and works with the configuration it
    # started with (as Postfix's smtpd processes do); new sessions see the new one
    assert c.cmd("RCPT TO:<alice@example.org>")[0] == 250
    c2 = lines_client(t)
    c2.cmd("HELO c.example")
    c2.cmd("MAIL FROM:<x@remote.test>")
    assert c2.cmd("RCPT TO:<carol@new.test>")[0] == 250
    # a broken file leaves the running configuration in place
    t.write_conf(t.base_conf + "bogus_key = 1\n")
    start = len(t.lines)
    t.signal(signal.SIGHUP)
    m = t.wait_log(r"reload failed.*tern\.conf:\d+: unknown key", start=start)
    assert c.cmd("NOOP")[0] == 250
    assert t.proc.poll() is None


def cert_fingerprint(port):
    pem = None
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    c = Lines(s)
    c.reply()
    c.cmd("EHLO c.example")
    c.cmd("STARTTLS")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ctx.wrap_socket(s, server_hostname="mx.example.org")
    der = tls.getpeercert(binary_form=True)
    tls.close()
    return der


def test_sighup_reloads_certificate(make_tern):
    t = make_tern()
    before = cert_fingerprint(t.smtp_port)
    cert = os.path.join(t.data, "tls", "cert.pem")
    key = os.path.join(t.data, "tls", "key.pem")
    assert os.path.exists(cert) and os.path.exists(key)
    assert os.stat(key).st_mode & 0o077 == 0, "private key is not readable by others"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=new.example.org"],
                   check=True, capture_output=True)
    start = len(t.lines)
    t.signal(signal.SIGHUP)
    t.wait_log(r"reloaded", start=start)
    after = cert_fingerprint(t.smtp_port)
    assert before != after


def test_connection_limit_per_ip(make_tern):
    t = make_tern("max_connections_per_ip = 3\n")
    socks = []
    for _ in range(3):
        s = Lines(t.connect())
        assert s.reply()[0] == 220
        socks.append(s)
    extra = Lines(t.connect())
    code, l = extra.reply()
    assert code == 421
    assert extra.closed()
    socks[0].cmd("QUIT")
    socks[0].closed()
    time.sleep(0.3)
    again = Lines(t.connect())
    assert again.reply()[0] == 220


def test_idle_timeout(make_tern):
    t = make_tern("smtp_timeout = 1s\n")
    c = Lines(t.connect())
    assert c.reply()[0] == 220
    code, l = c.reply(timeout=10)
    assert code == 421 and "4.4.2" in l[0]
    assert c.closed()


def test_many_idle_connections_single_process(make_tern):
    t = make_tern()
    socks = [socket.create_connection(("127.0.0.1", t.smtp_port), timeout=10) for _ in range(40)]
    for s in socks:
        assert s.recv(100).startswith(b"220 ")
    # one process, no threads per connection
    tasks = os.listdir(f"/proc/{t.proc.pid}/task")
    assert len(tasks) < 10, tasks
    for s in socks:
        s.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to test the privilege drop")
def test_privilege_drop(lines_client):
    # pytest's tmp_path lives under a 0700 directory of root's; nobody needs a
    # path it can traverse
    base = tempfile.mkdtemp(prefix="tern-privdrop-", dir="/tmp")
    os.chmod(base, 0o711)
    t = Tern(base, extra="user = nobody\n")
    t.start()
    try:
        _check_privilege_drop(t, lines_client)
        assert t.stop() == 0
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to test the privilege drop")
def test_privilege_drop_refuses_foreign_data_dir(tmp_path):
    """A data_dir that belongs to someone else is not chowned behind the admin's back."""
    base = tempfile.mkdtemp(prefix="tern-privdrop-", dir="/tmp")
    os.chmod(base, 0o711)
    try:
        os.mkdir(os.path.join(base, "var"), 0o700)   # owned by root
        conf = os.path.join(base, "tern.conf")
        with open(conf, "w") as f:
            f.write("hostname = mx.example.org\ndomains = example.org\ndata_dir = ./var\n"
                    "smtp_listen = 127.0.0.1:0\nuser = nobody\n")
        p = subprocess.run([TERN, "serve", "-c", conf], capture_output=True, text=True, timeout=30)
        assert p.returncode != 0
        assert "chown -R nobody" in p.stderr, p.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _check_privilege_drop(t, lines_client):
    nobody = pwd.getpwnam("nobody")
    with open(f"/proc/{t.proc.pid}/status") as f:
        status = f.read()
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M).groups()
    assert all(int(u) == nobody.pw_uid for u in uids), status
    # it still delivers (data_dir was handed over) and still has its TLS key
    c = lines_client(t)
    c.cmd("EHLO c.example")
    c.cmd("MAIL FROM:<x@remote.test>")
    c.cmd("RCPT TO:<alice@example.org>")
    c.cmd("DATA")
    c.send("Subject: dropped\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    assert len(t.read_messages("alice@example.org")) == 1
    # everything in data_dir belongs to the user, including the generated key
    for root, dirs, files in os.walk(t.data):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            assert st.st_uid == nobody.pw_uid, os.path.join(root, name)
    # an account added by root with the CLI while the server runs gets mail at once
    t.cli("user", "add", "carol@example.org", password="pw")
    assert os.stat(t.maildir("carol@example.org")).st_uid == nobody.pw_uid
    c.cmd("MAIL FROM:<x@remote.test>")
    assert c.cmd("RCPT TO:<carol@example.org>")[0] == 250
    c.cmd("DATA")
    c.send("Subject: new account\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    assert len(t.read_messages("carol@example.org")) == 1


def test_demo_account_first_run(make_tern):
    t = make_tern("demo_account = yes\n", users=())
    m = t.wait_log(r"address:\s+(demo@example\.org)")
    pw = t.wait_log(r"password: (\S+)").group(1)
    assert len(pw) >= 8
    p = t.cli("user", "list")
    assert p.stdout.split() == ["demo@example.org"]
    assert os.path.isdir(os.path.join(t.maildir("demo@example.org"), "new"))
    t.stop()
    # second start: no new demo account, no password printed
    t.lines = []
    t.start()
    assert "password:" not in t.log_text()


def test_startup_errors_name_file_line_or_address(make_tern):
    t = make_tern(start=False)
    t.write_conf(t.base_conf + "no_such_key = 1\n")
    err = start_fails(t)
    assert re.search(r"tern\.conf:6: unknown key \"no_such_key\"", err), err
    t.write_conf(t.base_conf + "max_message_size = lots\n")
    assert re.search(r"tern\.conf:6: max_message_size: bad value", start_fails(t))
    # port in use
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    t.write_conf(t.base_conf.replace("127.0.0.1:0", f"127.0.0.1:{port}"))
    err = start_fails(t)
    assert f"127.0.0.1:{port}" in err and "in use" in err, err
    busy.close()
    # unreadable certificate
    t.write_conf(t.base_conf + "tls_cert = /nonexistent/cert.pem\ntls_key = ./key.pem\n")
    with open(os.path.join(t.dir, "key.pem"), "w") as f:
        f.write("garbage")
    err = start_fails(t)
    assert "/nonexistent/cert.pem" in err, err
    with open(os.path.join(t.dir, "cert.pem"), "w") as f:
        f.write("not a certificate")
    t.write_conf(t.base_conf + "tls_cert = ./cert.pem\ntls_key = ./key.pem\n")
    err = start_fails(t)
    assert "cert.pem" in err, err
    # missing config file
    p = subprocess.run([TERN, "serve", "-c", "/nonexistent.conf"], capture_output=True, text=True)
    assert p.returncode != 0 and "/nonexistent.conf" in p.stderr


def test_tmp_files_with_fresh_ctime_survive_the_start_sweep(make_tern):
    """The start-up sweep removes tmp/ files whose mtime and ctime are both
    older than 36 hours (as Dovecot does); a file with an old mtime but a
    fresh ctime — an IMAP APPEND's message carries its INTERNALDATE as
    mtime while still in tmp/ — is left alone, and so is a fresh one.
    (A test cannot make a ctime old: removal is covered by test_maildir's
    test_clean_tmp with the age parameter.)"""
    t = make_tern(start=False)
    tmp = os.path.join(t.maildir("alice@example.org"), "tmp")
    dated = os.path.join(tmp, "1.M1P1Q1.append")
    fresh = os.path.join(tmp, "2.M2P2Q2.inflight")
    for p in (dated, fresh):
        with open(p, "w") as f:
            f.write("partial")
    os.utime(dated, (time.time() - 40 * 3600, time.time() - 40 * 3600))
    t.start()
    # the sweep runs on a job thread at start; a delivery afterwards is
    # proof enough that the start-up work is over
    s = smtplib.SMTP("127.0.0.1", t.smtp_port, timeout=10)
    s.sendmail("x@remote.test", ["alice@example.org"], "Subject: x\r\n\r\nx\r\n")
    s.quit()
    time.sleep(0.5)
    assert os.path.exists(dated)
    assert os.path.exists(fresh)

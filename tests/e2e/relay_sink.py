"""A tiny SMTP sink for the relay smoke and queue CLI tests (the full DNS/MX
fixture is tests/e2e/mailnet.py). One thread per connection; behaviour per
recipient is set by the test through `rcpt_reply`; STARTTLS and AUTH PLAIN
optional. Received messages land in `messages` as dicts."""
import os
import socket
import ssl
import subprocess
import threading

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HELPER_SRC = os.path.join(os.path.dirname(__file__), "queue_helper.c")


def build_helper(dest_dir):
    """Compile queue_helper.c against build/libtern.a; returns its path."""
    out = os.path.join(str(dest_dir), "queue_helper")
    subprocess.run(["cc", "-std=c11", "-D_GNU_SOURCE", "-I", os.path.join(ROOT, "src"),
                    HELPER_SRC, os.path.join(ROOT, "build", "libtern.a"), "-o", out,
                    "-lssl", "-lcrypto", "-lsqlite3", "-lcrypt", "-lz", "-lcares", "-lpthread"],
                   check=True, capture_output=True)
    return out


def enqueue(helper, data_dir, sender, rcpts, body):
    p = subprocess.run([helper, data_dir, sender, *rcpts], input=body.encode(),
                       capture_output=True, check=True, timeout=30)
    return p.stdout.decode().strip()


class Sink:
    def __init__(self, host="127.0.0.1", tls_cert=None, tls_key=None, auth=None,
                 greeting="220 sink.test ESMTP"):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(50)
        self.port = self.sock.getsockname()[1]
        self.messages = []
        self.sessions = []  # per connection: list of commands seen
        self.rcpt_reply = lambda addr: "250 2.1.5 ok"
        self.data_reply = lambda msg: "250 2.0.0 queued"
        self.greeting = greeting
        self.auth = auth  # "user:pass" required when set
        self.ctx = None
        if tls_cert:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(tls_cert, tls_key)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.stopped = True
        try:
            # a thread blocked in accept() keeps the socket listening past close()
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def wait(self, n, timeout=20):
        with self.cond:
            self.cond.wait_for(lambda: len(self.messages) >= n, timeout)
            return len(self.messages) >= n

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        cmds = []
        with self.lock:
            self.sessions.append(cmds)
        f = c.makefile("rwb")

        def send(line):
            f.write(line.encode() + b"\r\n")
            f.flush()

        tls = False
        authed = False
        try:
            if not self.greeting:
                # silent: never greet, wait for the client to give up
                f.readline()
                return
            send(self.greeting)
            if not self.greeting.startswith("220"):
                f.readline()
                return
            mail, rcpts = None, []
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode("utf-8", "replace").rstrip("\r\n")
                cmds.append(cmd)
                u = cmd.upper()
                if u.startswith("EHLO"):
                    ext = ["250-sink.test", "250-PIPELINING", "250-8BITMIME", "250-SIZE 0"]
                    if self.ctx and not tls:
                        ext.append("250-STARTTLS")
                    if self.auth and (tls or not self.ctx):
                        ext.append("250-AUTH PLAIN LOGIN")
                    ext.append("250 ENHANCEDSTATUSCODES")
                    for e in ext:
                        send(e)
                elif u.startswith("HELO"):
                    send("250 sink.test")
                elif u == "STARTTLS" and self.ctx and not tls:
                    send("220 2.0.0 go ahead")
                    f.close()
                    c = self.ctx.wrap_socket(c, server_side=True)
                    f = c.makefile("rwb")
                    tls = True
                elif u.startswith("AUTH PLAIN"):
                    import base64
                    raw = base64.b64decode(cmd.split()[2])
                    _, user, pw = raw.split(b"\0")
                    if self.auth == f"{user.decode()}:{pw.decode()}":
                        authed = True
                        send("235 2.7.0 ok")
                    else:
                        send("535 5.7.8 bad")
                elif u.startswith("MAIL FROM:"):
                    if self.auth and not authed:
                        send("530 5.7.0 auth first")
                        continue
                    mail, rcpts = cmd[10:].split()[0].strip("<>"), []
                    send("250 2.1.0 ok")
                elif u.startswith("RCPT TO:"):
                    addr = cmd[8:].split()[0].strip("<>")
                    r = self.rcpt_reply(addr)
                    if r.startswith("2"):
                        rcpts.append(addr)
                    send(r)
                elif u == "DATA":
                    if not rcpts:
                        send("554 5.5.1 no valid recipients")
                        continue
                    send("354 go")
                    data = b""
                    while True:
                        l = f.readline()
                        if not l or l == b".\r\n":
                            break
                        if l.startswith(b".."):
                            l = l[1:]
                        data += l
                    msg = {"from": mail, "to": rcpts, "data": data, "tls": tls,
                           "authed": authed}
                    r = self.data_reply(msg)
                    if r.startswith("2"):
                        with self.cond:
                            self.messages.append(msg)
                            self.cond.notify_all()
                    send(r)
                elif u == "RSET":
                    mail, rcpts = None, []
                    send("250 2.0.0 ok")
                elif u == "QUIT":
                    send("221 2.0.0 bye")
                    return
                else:
                    send("502 5.5.2 unknown")
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            try:
                c.close()
            except OSError:
                pass

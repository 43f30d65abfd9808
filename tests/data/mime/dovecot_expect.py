#!/usr/bin/env python3
# Records Dovecot's answers for the corpus as the expected outputs of
# tests/unit/test_mime_corpus.c. Needs Debian's dovecot-imapd and root; runs a
# throwaway Dovecot on 127.0.0.1:14399 from a config under /tmp, with one
# Maildir++ folder per corpus message (each file stored as-is, LF endings),
# fetches every item below with imaplib and writes msg/NNN-name.exp:
#   <item> <length>\n<raw IMAP value bytes>\n
# where the raw value is exactly what followed the item name in the FETCH
# response (literals kept as {n}\r\n...). Stops Dovecot at the end.
import imaplib, os, pwd, shutil, subprocess, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
MSGDIR = os.path.join(HERE, "msg")
ROOT = "/tmp/tern-dovecot"
PORT = 14399
ITEMS = ["RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY",
         "BODY.PEEK[]", "BODY.PEEK[HEADER]", "BODY.PEEK[TEXT]", "BODY.PEEK[1]", "BODY.PEEK[1.MIME]",
         "BODY.PEEK[2]", "BODY.PEEK[2.MIME]", "BODY.PEEK[3]", "BODY.PEEK[1.1]", "BODY.PEEK[1.2]",
         "BODY.PEEK[1.1.MIME]", "BODY.PEEK[2.1]", "BODY.PEEK[2.2]", "BODY.PEEK[1.HEADER]",
         "BODY.PEEK[1.TEXT]", "BODY.PEEK[2.HEADER]", "BODY.PEEK[2.TEXT]", "BODY.PEEK[1.1.1]",
         "BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]", "BODY.PEEK[HEADER.FIELDS.NOT (RECEIVED SUBJECT)]",
         "BODY.PEEK[1.HEADER.FIELDS (SUBJECT)]",
         "BODY.PEEK[]<10.20>", "BODY.PEEK[TEXT]<3.7>", "BODY.PEEK[1]<0.5>",
         "BINARY.PEEK[1]", "BINARY.PEEK[2]", "BINARY.SIZE[1]", "BINARY.SIZE[2]", "BINARY.PEEK[1.1]"]

def write_conf():
    if os.path.exists(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(ROOT + "/run")
    nb = pwd.getpwnam("nobody")
    with open(ROOT + "/passwd", "w") as f:
        f.write("tern:{PLAIN}tern:%d:%d::%s/home::\n" % (nb.pw_uid, nb.pw_gid, ROOT))
    with open(ROOT + "/dovecot.conf", "w") as f:
        f.write("""base_dir = %(r)s/run
state_dir = %(r)s/state
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
log_path = %(r)s/log
mail_location = maildir:%(r)s/home/Maildir
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = %(r)s/passwd
}
userdb {
  driver = passwd-file
  args = %(r)s/passwd
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %(p)d
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
service imap-login {
  chroot =
}
""" % {"r": ROOT, "p": PORT})
    names = sorted(n for n in os.listdir(MSGDIR) if n.endswith(".eml"))
    for i, n in enumerate(names):
        d = "%s/home/Maildir/.m%03d" % (ROOT, i)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(d + "/" + sub)
        shutil.copy(os.path.join(MSGDIR, n), d + "/cur/1000000000.M1P1.tern:2,")
    os.makedirs(ROOT + "/home/Maildir/cur"); os.makedirs(ROOT + "/home/Maildir/new"); os.makedirs(ROOT + "/home/Maildir/tmp")
    subprocess.run(["chown", "-R", "%d:%d" % (nb.pw_uid, nb.pw_gid), ROOT + "/home"], check=True)
    return names

def raw_value(data, item):
    # Rebuild the raw FETCH response text from imaplib's pieces.
    raw = b""
    for d in data:
        if isinstance(d, tuple):
            raw += d[0] + b"\r\n" + d[1]
        elif d is not None:
            raw += d
    # raw = b'1 (ITEM value)'; the echoed item name may differ (BODY.PEEK -> BODY)
    i = raw.index(b"(") + 1
    j = raw.index(b" ", i) if not raw[i:].startswith(b"BODY[") and not raw[i:].startswith(b"BINARY") else raw.index(b"]", i) + 1
    k = j
    if raw[k:k+1] == b"<":
        k = raw.index(b">", k) + 1
    return raw[k + 1:-1]

def main():
    names = write_conf()
    proc = subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", ROOT + "/dovecot.conf"])
    try:
        for _ in range(50):
            try:
                M = imaplib.IMAP4("127.0.0.1", PORT); break
            except OSError:
                time.sleep(0.2)
        M.login("tern", "tern")
        for i, n in enumerate(names):
            typ, _ = M.select("m%03d" % i, readonly=True)
            assert typ == "OK", n
            out = b""
            for item in ITEMS:
                M.untagged_responses.clear()
                typ, data = M.fetch("1", "(" + item + ")")
                data = [d for d in data if d is not None]
                if len(data) > 1 and not isinstance(data[-1], tuple):
                    # keep only the last FETCH response (imaplib pieces)
                    pass
                if typ != "OK" or not data:
                    v = b"NO"
                else:
                    v = raw_value(data, item)
                name = item.replace(".PEEK", "").encode()
                out += name + b" " + str(len(v)).encode() + b"\n" + v + b"\n"
            with open(os.path.join(MSGDIR, n[:-4] + ".exp"), "wb") as f:
                f.write(out)
        M.logout()
    finally:
        proc.terminate(); proc.wait()
    print("wrote", len(names), "expected files")

main()

#!/usr/bin/env python3
# Writes the mixed benchmark corpus for tools/bench_mime.sh into DIR:
# the tests/data/mime corpus plus deterministic synthetic mail shaped like a
# real mailbox: short and long text/plain, text/alternative newsletters,
# base64 attachments of 20 KB - 2 MB, nested multiparts, forwarded
# message/rfc822, quoted-printable, long header blocks (Received chains).
import base64, os, random, shutil, sys
out = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
shutil.rmtree(out, ignore_errors=True)
os.makedirs(out)
src = os.path.join(here, "..", "tests", "data", "mime", "msg")
for n in os.listdir(src):
    if n.endswith(".eml"):
        shutil.copy(os.path.join(src, n), os.path.join(out, n))
rnd = random.Random(42)
words = ("the of and to in is you that it he was for on are as with his they at be this have from "
         "or one had by word but not what all were we when your can said there use an each which she "
         "do how their if will up other about out many then them these so some her would make like").split()
def text(nlines):
    return "".join(" ".join(rnd.choice(words) for _ in range(rnd.randint(6, 14))) + "\n" for _ in range(nlines))
def hdr(i, extra=""):
    rec = "".join("Received: from mx%d.example.net (mx%d.example.net [192.0.2.%d])\n\tby mail.example.org with ESMTPS id %08x\n\tfor <user@example.org>; Thu, 26 Nov 2026 10:%02d:00 +0000\n" % (k, k, k, rnd.getrandbits(32), k) for k in range(rnd.randint(2, 6)))
    return (rec + "From: \"Sender %d\" <sender%d@example.net>\nTo: User <user@example.org>, other%d@example.org\n"
            "Cc: =?utf-8?q?J=C3=BCrgen?= <j@example.de>\nSubject: =?utf-8?b?%s?=\nDate: Thu, 26 Nov 2026 10:00:00 +0000\n"
            "Message-ID: <%d.%x@example.net>\nMIME-Version: 1.0\n%s" % (i, i, i, base64.b64encode(("Message %d über" % i).encode()).decode(), i, rnd.getrandbits(40), extra))
def b64(n):
    return base64.encodebytes(bytes(rnd.getrandbits(8) for _ in range(n))).decode()
for i in range(400):
    kind = i % 8
    if kind in (0, 1):
        m = hdr(i, "Content-Type: text/plain; charset=utf-8\n\n") + text(rnd.randint(5, 200))
    elif kind == 2:
        m = hdr(i, "Content-Type: multipart/alternative; boundary=\"alt%d\"\n\n" % i) + \
            "--alt%d\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n%s\n--alt%d\nContent-Type: text/html; charset=utf-8\n\n<html><body>%s</body></html>\n--alt%d--\n" % (i, text(80), i, text(150).replace("\n", "<br>\n"), i)
    elif kind in (3, 4):
        m = hdr(i, "Content-Type: multipart/mixed; boundary=\"mix%d\"\n\n" % i) + \
            "This is a multi-part message in MIME format.\n--mix%d\nContent-Type: text/plain\n\n%s\n--mix%d\nContent-Type: application/pdf; name=\"doc%d.pdf\"\nContent-Disposition: attachment; filename=\"doc%d.pdf\"\nContent-Transfer-Encoding: base64\n\n%s--mix%d--\n" % (i, text(30), i, i, i, b64(rnd.choice([20000, 80000, 300000, 1000000])), i)
    elif kind == 5:
        inner = hdr(i + 1000, "Content-Type: multipart/mixed; boundary=in%d\n\n" % i) + "--in%d\nContent-Type: text/plain\n\n%s\n--in%d\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\n%s--in%d--\n" % (i, text(40), i, b64(50000), i)
        m = hdr(i, "Content-Type: multipart/mixed; boundary=fw%d\n\n" % i) + "--fw%d\nContent-Type: text/plain\n\nforwarded:\n--fw%d\nContent-Type: message/rfc822\n\n%s\n--fw%d--\n" % (i, i, inner, i)
    elif kind == 6:
        m = hdr(i, "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n") + text(300).replace("e ", "=E9 ")
    else:
        parts = "".join("--n%d\nContent-Type: multipart/related; boundary=r%d_%d\n\n--r%d_%d\nContent-Type: text/html\n\n%s\n--r%d_%d\nContent-Type: image/gif\nContent-ID: <g%d>\nContent-Transfer-Encoding: base64\n\n%s--r%d_%d--\n" % (i, i, k, i, k, text(20), i, k, k, b64(5000), i, k) for k in range(5))
        m = hdr(i, "Content-Type: multipart/mixed; boundary=n%d\n\n" % i) + parts + "--n%d--\n" % i
    with open(os.path.join(out, "synth%03d.eml" % i), "w") as f:
        f.write(m)

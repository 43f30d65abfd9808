"""The command line (issue 2): --help everywhere, version, user and alias
management with the password on stdin, and tern config."""
import os
import sqlite3
import subprocess

import pytest

from conftest import TERN, Tern


def run(*args, input=""):
    return subprocess.run([TERN, *args], input=input, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["user", "--help"],
                                  ["user", "add", "--help"], ["alias", "--help"],
                                  ["alias", "list", "--help"], ["config", "--help"],
                                  ["version", "--help"]])
def test_help_everywhere(args):
    p = run(*args)
    assert p.returncode == 0, p.stderr
    assert "usage: tern" in p.stdout


def test_version_and_bad_usage():
    p = run("version")
    assert p.returncode == 0 and p.stdout.startswith("tern ")
    assert run().returncode == 2
    assert run("frobnicate").returncode == 2
    assert run("serve").returncode == 2


def test_user_management(tmp_path):
    t = Tern(tmp_path, users=())
    assert t.cli("user", "add", "Alice@Example.ORG", password="s3cret").returncode == 0
    assert os.path.isdir(os.path.join(t.maildir("alice@example.org"), "cur"))
    p = t.cli("user", "add", "alice@example.org", password="x", check=False)
    assert p.returncode == 1 and "exist" in p.stderr
    p = t.cli("user", "add", "x@elsewhere.test", password="x", check=False)
    assert p.returncode == 1 and "not in a local domain" in p.stderr
    p = t.cli("user", "add", "bad address@example.org", password="x", check=False)
    assert p.returncode == 1
    p = t.cli("user", "add", "empty@example.org", password="", check=False)
    assert p.returncode == 1 and "empty password" in p.stderr
    t.cli("user", "add", "bob@example.net", password="pw")
    assert t.cli("user", "list").stdout.split() == ["Alice@example.org", "bob@example.net"]
    # the stored hash is yescrypt, never the password
    db = sqlite3.connect(os.path.join(t.data, "accounts.db"))
    hashes = [r[0] for r in db.execute("select hash from users")]
    db.close()
    assert all(h.startswith("$y$") for h in hashes), hashes
    assert "s3cret" not in open(os.path.join(t.data, "accounts.db"), "rb").read().decode("latin1")
    old = hashes[0]
    t.cli("user", "passwd", "alice@example.org", password="n3w")
    db = sqlite3.connect(os.path.join(t.data, "accounts.db"))
    assert db.execute("select hash from users where address like 'alice@%'").fetchone()[0] != old
    db.close()
    p = t.cli("user", "passwd", "nobody@example.org", password="x", check=False)
    assert p.returncode == 1
    p = t.cli("user", "del", "bob@example.net")
    assert "kept" in p.stdout
    assert t.cli("user", "list").stdout.split() == ["Alice@example.org"]
    p = t.cli("user", "del", "bob@example.net", check=False)
    assert p.returncode == 1


def test_alias_management(tmp_path):
    t = Tern(tmp_path)
    t.cli("alias", "add", "team@example.org", "alice@example.org", "bob@example.org")
    out = t.cli("alias", "list").stdout
    assert "team@example.org -> alice@example.org" in out
    assert "team@example.org -> bob@example.org" in out
    p = t.cli("alias", "add", "x@example.org", "nobody@example.org", check=False)
    assert p.returncode == 1
    p = t.cli("alias", "add", "alice@example.org", "bob@example.org", check=False)
    assert p.returncode == 1   # an address is a user or an alias, not both
    t.cli("alias", "del", "team@example.org", "bob@example.org")
    assert "bob@example.org" not in t.cli("alias", "list").stdout
    t.cli("alias", "del", "team@example.org")
    assert t.cli("alias", "list").stdout.strip() == ""


def test_config_command(tmp_path):
    t = Tern(tmp_path, users=())
    p = run("config", "-c", t.conf)
    assert p.returncode == 0
    assert "hostname = mx.example.org" in p.stdout
    assert "max_message_size" not in p.stdout
    p = run("config", "-c", t.conf, "--all")
    assert "max_message_size = 52428800" in p.stdout
    with open(t.conf, "a") as f:
        f.write("oops\n")
    p = run("config", "-c", t.conf)
    assert p.returncode == 1 and "tern.conf:6:" in p.stderr


def test_readme_config_reference_is_complete():
    """Every key in the table is documented in the README's reference."""
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")).read()
    p = run("config", "-c", "/dev/null", "--all")
    assert p.returncode == 0, p.stderr
    for line in p.stdout.splitlines():
        key = line.split(" = ")[0]
        assert f"`{key}`" in readme, key
    # and the table is exactly what the settings table says (tools/readme-config.sh)
    ref = run("config", "--reference")
    assert ref.returncode == 0
    assert ref.stdout in readme


def test_import_existing_hashes(tmp_path):
    """$6$ and $2b$ hashes made by other systems can be imported as they are."""
    import crypt_helper
    t = Tern(tmp_path, users=())
    for addr, h in (("six@example.org", crypt_helper.sha512crypt("pw6")),
                    ("bee@example.org", crypt_helper.bcrypt("pwb"))):
        p = subprocess.run([TERN, "user", "add", "-c", t.conf, addr, "--hash"], input=h + "\n",
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    db = sqlite3.connect(os.path.join(t.data, "accounts.db"))
    got = dict(db.execute("select address, hash from users"))
    db.close()
    assert got["six@example.org"].startswith("$6$")
    assert got["bee@example.org"].startswith("$2b$")
    p = subprocess.run([TERN, "user", "add", "-c", t.conf, "bad@example.org", "--hash"],
                       input="plaintext\n", capture_output=True, text=True)
    assert p.returncode == 1

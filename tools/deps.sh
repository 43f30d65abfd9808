#!/usr/bin/env bash
# Installs the Debian packages Tern needs to build and test, if any are missing.
# Uses apt-get, with sudo when not root; says what it installs. Quiet when all present.
set -euo pipefail
# What each make target needs: `make`/`make run` only the build, `make check` the
# test tools too, `make bench` also GMime (the message library's yardstick).
build=(gcc make pkg-config libssl-dev libsqlite3-dev libcrypt-dev zlib1g-dev libc-ares-dev openssl)
test=(libcmocka-dev clang libclang-rt-14-dev curl python3 python3-pytest swaks fetchmail isync)
bench=(python3 libgmime-3.0-dev)
# Node.js for the imapflow/nodemailer tests: Debian's packages only when no
# node is installed at all (a NodeSource node ships its own npm and must not
# be mixed with Debian's npm package).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	test+=(nodejs npm)
fi
case "${1:-test}" in
	build) pkgs=("${build[@]}") ;;
	test) pkgs=("${build[@]}" "${test[@]}") ;;
	bench) pkgs=("${build[@]}" "${bench[@]}") ;;
	*) echo "usage: tools/deps.sh [build|test|bench]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "tools/deps.sh: installing missing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q "${missing[@]}" >/tmp/tern-apt.log 2>&1 || {
	$SUDO apt-get update -q >/tmp/tern-apt.log 2>&1 || true
	$SUDO apt-get install -y -q "${missing[@]}" >>/tmp/tern-apt.log 2>&1 || {
		tail -20 /tmp/tern-apt.log >&2; exit 1; }
}
echo "tools/deps.sh: installed ${missing[*]}"

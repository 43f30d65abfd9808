#!/bin/sh
# Builds tools/bench_mime (Tern's libtern.a + GMime 3, the latter only here)
# and compares parse throughput on a mixed corpus generated into /tmp.
#   tools/bench_mime.sh [ROUNDS]
set -e
cd "$(dirname "$0")/.."
make -s build/libtern.a
mkdir -p build/tools
cc -O2 -g -std=c11 -D_GNU_SOURCE -Isrc $(pkg-config --cflags gmime-3.0) tools/bench_mime.c \
	build/libtern.a $(pkg-config --libs gmime-3.0) -o build/tools/bench_mime
CORPUS=${CORPUS:-/tmp/tern-bench-mime}
[ -d "$CORPUS" ] || python3 tools/bench_mime_corpus.py "$CORPUS"
echo "machine: $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
build/tools/bench_mime "$CORPUS" "${1:-5}"

#!/usr/bin/env bash
# Refresh the configuration reference in README.md from the settings table
# (`tern config --reference`); run after adding or changing a key.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${TERN_BIN:-build/tern}
table=$("$bin" config --reference)
TABLE="$table" /usr/bin/python3 - <<'PY'
import os, re
p = "README.md"
s = open(p).read()
start = s.index("<!-- config-table")
start = s.index("\n", start) + 1
end = s.index("<!-- /config-table -->")
s = s[:start] + os.environ["TABLE"].rstrip("\n") + "\n" + s[end:]
open(p, "w").write(s)
PY
echo "README.md configuration reference refreshed"

#!/usr/bin/env bash
# First contact, as a newcomer meets it: a fresh venv with `pip install -e .` only (no extras),
# every module of the package importable, `tallyql serve --demo` on a free port, and the
# README's first query answered with a non-zero totalRequests. Catches a runtime import that
# only a test extra provides.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip
"$work/venv/bin/pip" install -q -e .
"$work/venv/bin/python" - <<'PY'
import importlib
import pkgutil

import tallyql

failed = []
for module in pkgutil.walk_packages(tallyql.__path__, "tallyql."):
    if module.name.endswith(("__main__", ".migrations.env")):
        continue  # a command, and alembic's script (run only by alembic)
    try:
        importlib.import_module(module.name)
    except Exception as exc:  # noqa: BLE001 - report every failure, then stop
        failed.append(f"{module.name}: {exc!r}")
if failed:
    raise SystemExit("modules that a bare install cannot import:\n" + "\n".join(failed))
PY

port=$("$work/venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
started=$(date +%s)
(cd "$work" && TALLYQL_DATA_DIR="$work/data" exec "$work/venv/bin/tallyql" serve --demo --port "$port") \
  >"$work/serve.log" 2>&1 &
server_pid=$!
"$work/venv/bin/python" - "$port" "$work/serve.log" README.md <<'PY'
import json
import re
import sys
import time
import urllib.request
from pathlib import Path

port, log, readme = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]).read_text()
query = re.search(r"```graphql\n(.*?)```", readme, re.S).group(1)
deadline = time.monotonic() + 240
key = None
while time.monotonic() < deadline:
    found = re.search(r'"Bearer (tq_[A-Za-z0-9_-]+)"', log.read_text())
    if found:
        key = found.group(1)
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/graphql",
                data=json.dumps({"query": query}).encode(),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                body = json.load(response)
            break
        except OSError:
            pass  # printed before the server listens: try again
    time.sleep(0.5)
else:
    sys.exit(f"serve --demo did not answer the README's first query:\n{log.read_text()[-3000:]}")
assert "errors" not in body, body["errors"]
total = body["data"]["overview"]["totalRequests"]
assert total > 0, body
print(f"smoke: the README's first query answered totalRequests={total}")
PY
echo "smoke: serve --demo answered in $(( $(date +%s) - started )) s"

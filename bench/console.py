"""Console benchmark: time from navigation to a fully rendered view, and the bytes it costs.

    python bench/console.py                                   # 100k demo events, SQLite
    python bench/console.py --database-url postgresql://postgres@127.0.0.1:5432/tallyql_console

Loads demo traffic (`tallyql demo`, 30 days; on a database that has it already, duplicates),
starts `tallyql serve`, and opens each view of the console in Debian's chromium (Playwright,
never `playwright install`), each time in a fresh browser context (cold cache, fresh session
storage; the key comes in the #key= fragment). A view counts as rendered when its last part
is on the page (the Overview: KPIs and both charts drawn); the time is the page's own
performance.now() at that moment, i.e. from the start of navigation. Prints the median over
`--rounds`, the bytes the page transferred (the server does not compress) and the console's
own files gzip-compressed (what a compressing proxy would send).
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Browser, sync_playwright
from support import free_port, tallyql  # bench/ is the script's directory

CHROMIUM = "/usr/bin/chromium"
STATIC = Path(__file__).resolve().parent.parent / "tallyql" / "http" / "static"
WORKSPACE = "acme"
# the element whose presence means the view is done
VIEWS: dict[str, str] = {
    "overview": "section.charts figure.chart:nth-child(2) canvas",
    "costs": "section.compare",
    "requests": "table.requests tbody tr",
    "sessions": "table.sessions tbody tr",
    "live": "[data-metric='today.costUsd']",
    "usage": "table.usage tbody tr",
    "tools": "table.top-tools tbody tr",
    "agents": "table.agents tbody tr",
    "gateways": "table.gateways tbody tr",
    "security": "section.kpis [data-metric='blockedCalls']",
    "errors": "section.charts figure.chart:nth-child(2) canvas",
    "audit": "table.audit tbody tr",
    "budgets": "section.rules",
    "workspaces": "table.workspaces tbody tr",
}
TARGETS_MS = {"overview": 1500.0}
ANY_VIEW_MS = 2000.0


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tallyql", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not start")


def render(browser: Browser, url: str, key: str, view: str) -> tuple[float, int]:
    """Milliseconds from navigation to the view rendered, and bytes transferred."""
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    page.goto(f"{url}/?view={view}#key={key}", wait_until="commit")
    done = page.wait_for_function(
        "sel => document.querySelector(sel) && performance.now()",
        arg=VIEWS[view],
        polling="raf",
        timeout=60_000,
    ).json_value()
    transferred = page.evaluate(
        "() => [...performance.getEntriesByType('navigation'),"
        " ...performance.getEntriesByType('resource')]"
        ".reduce((n, e) => n + (e.transferSize || 0), 0)"
    )
    context.close()
    return float(done), int(transferred)


def console_files_gzipped() -> tuple[int, int]:
    """The console's own files (its modules and styles, uPlot, graphql-ws): raw and gzip -9."""
    files = [
        *(STATIC / "console").rglob("*"),
        STATIC / "uplot" / "uPlot.iife.min.js",
        STATIC / "uplot" / "uPlot.min.css",
        STATIC / "graphiql" / "graphql-ws.min.js",
    ]
    contents = [f.read_bytes() for f in files if f.is_file()]
    return sum(map(len, contents)), sum(len(gzip.compress(c, 9)) for c in contents)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'console-bench.db'}"
        env = {
            **os.environ,
            "TALLYQL_DATABASE_URL": url,
            "TALLYQL_DATA_DIR": tmp,
            "TALLYQL_LOG_LEVEL": "warning",
            # the benchmark's admin key may then open the Workspaces view
            "TALLYQL_OPERATOR_WORKSPACE": WORKSPACE,
        }
        key = tallyql("keys", "create", "--workspace", WORKSPACE, "--role", "admin", env=env)
        key = key.strip().splitlines()[-1]
        # the same seed writes the same events: on a database that has them, all are duplicates
        print(f"loading {args.events:,} demo events over {args.days} days ...", flush=True)
        demo = ["demo", "--workspace", WORKSPACE, "--events", str(args.events)]
        print(tallyql(*demo, "--days", str(args.days), env=env).strip())
        server, base = start_server(env)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM)
                render(browser, base, key, "overview")  # warm the server's caches and pools
                print(f"\n{'view':<10} {'median ms':>10} {'max ms':>8} {'KiB sent':>9}  target")
                for view in VIEWS:
                    runs = [render(browser, base, key, view) for _ in range(args.rounds)]
                    times = [t for t, _ in runs]
                    target = TARGETS_MS.get(view, ANY_VIEW_MS)
                    verdict = "ok" if statistics.median(times) <= target else "OVER"
                    print(
                        f"{view:<10} {statistics.median(times):>10.0f} {max(times):>8.0f} "
                        f"{runs[-1][1] / 1024:>9.0f}  <= {target:.0f} ms {verdict}"
                    )
                browser.close()
        finally:
            server.terminate()
            server.wait(30)
    raw, packed = console_files_gzipped()
    print(
        f"\nthe console's own files: {raw / 1024:.0f} KiB, {packed / 1024:.0f} KiB gzipped "
        f"(target <= 1,536 KiB compressed)"
    )


if __name__ == "__main__":
    main()

"""Refresh the browser assets under tallyql/http/static/ from npm.

The packages, their exact versions, the files taken from each and their license files are
listed in tallyql/http/static/vendor.json, the one place they are pinned. This script runs
`npm pack NAME@VERSION` for each one (npm's registry is the only network it needs), checks
the tarball against the recorded integrity (or records it, with --update-integrity, after a
version bump), and copies the listed files and licenses into tallyql/http/static/<dir>/.

    python scripts/vendor_static.py                       # re-fetch the pinned versions
    python scripts/vendor_static.py --update-integrity    # after editing a version
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

STATIC = Path(__file__).resolve().parent.parent / "tallyql" / "http" / "static"
MANIFEST = STATIC / "vendor.json"


def pack(name: str, version: str, into: Path) -> tuple[Path, str]:
    """The tarball npm fetched for NAME@VERSION and its integrity (sha512, SRI form)."""
    done = subprocess.run(
        ["npm", "pack", f"{name}@{version}", "--json", "--pack-destination", str(into)],
        check=True,
        capture_output=True,
        text=True,
    )
    (info,) = json.loads(done.stdout)
    return into / info["filename"], info["integrity"]


def extract(tarball: Path, into: Path) -> Path:
    with tarfile.open(tarball) as archive:
        archive.extractall(into, filter="data")
    return into / "package"


def vendor(package: dict[str, Any], work: Path, update_integrity: bool) -> None:
    name, version = package["name"], package["version"]
    tarball, integrity = pack(name, version, work)
    recorded = package.get("integrity")
    if recorded and recorded != integrity and not update_integrity:
        sys.exit(f"{name}@{version}: integrity {integrity} differs from the recorded {recorded}")
    package["integrity"] = integrity
    root = extract(tarball, work / f"{name}-{version}")
    target = STATIC / package["dir"]
    target.mkdir(parents=True, exist_ok=True)
    for source, dest in {**package["files"], **package["licenses"]}.items():
        shutil.copyfile(root / source, target / dest)
        print(f"{name}@{version}: {source} -> {target.relative_to(STATIC.parent)}/{dest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--update-integrity",
        action="store_true",
        help="record the integrity of the fetched tarballs (after changing a version)",
    )
    args = parser.parse_args()
    manifest = json.loads(MANIFEST.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        for package in manifest["packages"]:
            vendor(package, Path(tmp), args.update_integrity)
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()

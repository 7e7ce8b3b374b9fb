"""The web console's vendored front-end files: fetch them from the npm registry, or check them.

The console has no build step: it serves a few files of two npm packages as they are
published (``services/api/src/ktrdr_api/console/vendor.json`` names the package, its version,
npm's sha512 of the tarball, and which files are copied where). This script needs no Node.js:

    python infra/scripts/vendor_console.py           # (re)write the files from the registry
    python infra/scripts/vendor_console.py --check   # prove the shipped files are those bytes

``--check`` downloads each tarball, verifies npm's integrity hash, and compares every vendored
file byte for byte with the tarball's; it exits 1 naming any file that differs. CI runs it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "services/api/src/ktrdr_api/console"
MANIFEST = CONSOLE / "vendor.json"
REGISTRY = "https://registry.npmjs.org"


def tarball(name: str, version: str, integrity: str) -> tarfile.TarFile:
    """Return the package's published tarball, after checking npm's sha512 integrity."""
    url = f"{REGISTRY}/{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"
    with urllib.request.urlopen(url, timeout=60) as reply:
        data = reply.read()
    algorithm, _, want = integrity.partition("-")
    got = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if got != want:
        raise SystemExit(f"{url}: {algorithm} is {got}, the manifest says {want}")
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    manifest = json.loads(MANIFEST.read_text())
    differ: list[str] = []
    for package in manifest["packages"]:
        archive = tarball(package["name"], package["version"], package["integrity"])
        for source, target in package["files"].items():
            member = archive.extractfile(f"package/{source}")
            if member is None:
                raise SystemExit(f"{package['name']}: no file {source} in the tarball")
            published = member.read()
            path = CONSOLE / target
            if args.check:
                if not path.exists() or path.read_bytes() != published:
                    differ.append(
                        f"{target} is not {package['name']}@{package['version']}/{source}"
                    )
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(published)
        print(f"{package['name']}@{package['version']}: {len(package['files'])} files ok")
    for line in differ:
        print(f"differs: {line}", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

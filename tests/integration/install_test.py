#!/usr/bin/env python3
"""`meson install` into a scratch destdir: the man pages and --help send an
installed vmwarden's reader to the installed doc directory, and every
document, example directory and page they name there is installed.

Usage: install_test.py BUILD_DIR PREFIX DOC_DIR man-pages|no-man-pages (as
meson passes them; no-man-pages when scdoc was not found, and none is built).
"""
import os
import re
import subprocess
import sys
import tempfile

build_dir, prefix, doc_dir, man_pages_built = sys.argv[1:5]
failures = []

with tempfile.TemporaryDirectory(prefix="vmwarden-install-") as destdir:
    subprocess.run(["meson", "install", "-C", build_dir, "--no-rebuild", "--quiet", "--destdir", destdir],
                   check=True, stdout=subprocess.DEVNULL)

    def installed(path):
        return os.path.join(destdir, path.lstrip("/"))

    man_dir = installed(os.path.join(prefix, "share/man/man1"))
    pages = sorted(os.listdir(man_dir)) if os.path.isdir(man_dir) else []
    expected = ["vmwarden-acl.1", "vmwarden-uid.1", "vmwarden.1"] if man_pages_built == "man-pages" else []
    if pages != expected:
        failures.append(f"man pages installed: {pages}, not {expected}")
    named = set()
    for page in pages:
        with open(os.path.join(man_dir, page)) as f:
            text = f.read().replace("\\&", "")
        if "@DOCDIR@" in text:
            failures.append(f"{page}: @DOCDIR@ left unsubstituted")
        for path in re.findall(re.escape(doc_dir) + r"/[\w./-]*", text):
            named.add(path.rstrip("."))
    if pages and not any(path.endswith("/SECURITY.md") for path in named):
        failures.append(f"the man pages name no document under {doc_dir}: {sorted(named)}")
    for path in sorted(named):
        if not os.path.exists(installed(path)):
            failures.append(f"named by a man page, not installed: {path}")

    binary = installed(os.path.join(prefix, "bin/vmwarden"))
    help_text = subprocess.run([binary, "--help"], check=True, capture_output=True, text=True).stdout
    if f"See vmwarden(1), and {doc_dir} " not in help_text:
        failures.append(f"--help does not name {doc_dir}:\n{help_text[-300:]}")
    for document in ["CONFIGURATION.md", "SECURITY.md", "examples/work.toml"]:
        if not os.path.isfile(installed(os.path.join(doc_dir, document))):
            failures.append(f"not installed: {doc_dir}/{document}")

for failure in failures:
    print(failure, file=sys.stderr)
sys.exit(1 if failures else 0)

"""Headless Chromium for the browser tests: the binary, the flags, a throwaway profile.

The flags follow ``COMPONENTS.md``: no sandbox (we run as root), no GPU, no
background networking or component updates, and name resolution for nothing
but loopback, so the browser never tries to reach outside the machine.
"""

from __future__ import annotations

import shutil
import tempfile

from twisted.trial.unittest import TestCase

CHROMIUM = "/usr/bin/chromium"

#: flags every test browser gets
BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-zygote",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
)


def fresh_profile(test: TestCase) -> str:
    """A new, empty ``--user-data-dir``, removed when ``test`` ends."""
    profile = tempfile.mkdtemp(prefix="oauthproxy-chromium-")
    test.addCleanup(shutil.rmtree, profile, True)
    return profile

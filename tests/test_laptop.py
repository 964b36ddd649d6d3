"""``make test`` on a laptop: without root it installs nothing and says so, and the tests that need a
system program skip with a one-line reason (CI, which installs them as root, fails them instead).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import ROOT


def test_debian_tools_without_root_or_sudo_is_a_note_not_a_failure(tmp_path):
    # A non-root user whose sudo wants a password: `id -u` says 1000, `sudo -n` refuses.
    (tmp_path / "id").write_text("#!/bin/sh\necho 1000\n")
    (tmp_path / "sudo").write_text("#!/bin/sh\nexit 1\n")
    for tool in ("id", "sudo"):
        (tmp_path / tool).chmod(0o755)
    result = subprocess.run([shutil.which("make"), "-s", "debian-tools", "DEBIAN_TOOLS=no-such-tool-for-test jq"], cwd=ROOT,
                            env={**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("note: no-such-tool-for-test not installed (not root, no password-less sudo): the tests that "
                             "need them skip; to run them: sudo apt-get install -y no-such-tool-for-test\n")


def run_browser_tests(**env: str) -> subprocess.CompletedProcess:
    # PATH without chromium: only the venv's own programs. A laptop's environment, not CI's (which sets
    # COMFY_COMPAT_REQUIRE_TOOLS for the whole suite, this test included).
    laptop = {k: v for k, v in os.environ.items() if k != "COMFY_COMPAT_REQUIRE_TOOLS"}
    return subprocess.run([sys.executable, "-m", "pytest", "tests/test_report_browser.py", "-p", "no:cacheprovider", "-q", "-rs"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**laptop, "PATH": os.path.dirname(sys.executable), **env})


def test_browser_tests_skip_with_a_reason_without_chromium_and_fail_in_ci():
    laptop = run_browser_tests()
    assert laptop.returncode == 0, laptop.stdout[-2000:]
    assert "SKIPPED" in laptop.stdout
    assert "needs chromium or chromium-browser or google-chrome on PATH (Debian: apt-get install -y chromium)" in laptop.stdout
    ci = run_browser_tests(COMFY_COMPAT_REQUIRE_TOOLS="1")
    assert ci.returncode == 1
    assert "needs chromium or chromium-browser or google-chrome on PATH" in ci.stdout

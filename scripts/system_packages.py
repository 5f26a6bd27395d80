"""The optional system packages of the app and the suite: which are missing, and installing them where we may.

``make app`` and ``make test`` run ``python3 scripts/system_packages.py install`` before anything else. On
Debian or Ubuntu, run as root or by a user for whom ``sudo -n true`` succeeds, it installs what is missing
with ``apt-get`` after one line saying what and why. Anywhere else it prints one line naming what is missing
and the command that installs it, and goes on (exit 0): the tests that need a missing part skip with that
same line as their reason (tests/conftest.py reads :data:`PARTS` and :func:`missing_line` from here).

Standard library only: it runs before the virtual environment exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Part:
    """One optional system package: its Debian name, what needs it, and the file that shows it is there."""

    package: str
    used_for: str
    marker: Path

    def present(self) -> bool:
        return self.marker.exists()


PARTS = {
    "chromium": Part(
        "chromium",
        "browser tests and PNG export",
        Path(os.environ.get("COATNET_CHROMIUM", "/usr/bin/chromium")),
    ),
    "fashion-mnist": Part(
        "dataset-fashion-mnist",
        "training, probes and studies",
        Path(os.environ.get("COATNET_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
        / "t10k-images-idx3-ubyte.gz",
    ),
}


def missing() -> list[Part]:
    return [part for part in PARTS.values() if not part.present()]


def install_command(parts: list[Part]) -> str:
    return "sudo apt-get install " + " ".join(part.package for part in parts)


def missing_line(parts: list[Part] | None = None) -> str:
    """One line naming what is missing and the command that installs it ('' when nothing is)."""
    parts = missing() if parts is None else parts
    if not parts:
        return ""
    what = "; ".join(f"{part.package} ({part.used_for})" for part in parts)
    return f"missing: {what}; install with `{install_command(parts)}`"


def _privilege() -> list[str] | None:
    """The prefix that runs apt-get with root's rights here, or None where we may not."""
    if shutil.which("apt-get") is None:
        return None
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


def install() -> int:
    """Install what is missing where we may; else say what is missing. Always 0: the rest goes on."""
    parts = missing()
    if not parts:
        return 0
    prefix = _privilege()
    if prefix is None or os.environ.get("COATNET_NO_SYSTEM_INSTALL"):
        print(missing_line(parts) + " (the tests that need them skip)", flush=True)
        return 0
    names = [part.package for part in parts]
    why = ", ".join(f"{part.package} for {part.used_for}" for part in parts)
    print(f"installing with apt-get: {why}", flush=True)
    # through env, so that sudo's reset environment keeps them; no prompt can wait on make's stdin
    apt = [*prefix, "env", "DEBIAN_FRONTEND=noninteractive", "DEBCONF_NOWARNINGS=yes", "apt-get"]
    quiet = {"stdout": subprocess.DEVNULL, "stdin": subprocess.DEVNULL}
    done = (
        subprocess.run([*apt, "update", "-qq"], **quiet).returncode == 0
        and subprocess.run([*apt, "install", "-y", "-qq", *names], **quiet).returncode == 0
    )
    if not done or missing():
        print(missing_line() + " (apt-get failed; the tests that need them skip)", flush=True)
    return 0


def main(argv: list[str]) -> int:
    if argv == ["install"]:
        return install()
    if argv == ["check"]:
        line = missing_line()
        print(line or "every optional system package is present")
        return 0
    print("usage: system_packages.py install|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

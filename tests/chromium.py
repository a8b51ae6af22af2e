"""Headless Chromium screenshots of a local HTML file (Debian's ``chromium`` package; no network)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome")


def find() -> str | None:
    return next((found for name in NAMES if (found := shutil.which(name))), None)


def screenshot(html: Path, png: Path, width: int, height: int) -> Path:
    """Render ``html`` at ``width`` x ``height`` CSS pixels into ``png``."""
    browser = find()
    if browser is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
                "--disable-gpu",
                "--disable-dev-shm-usage",  # containers give /dev/shm 64 MiB, too little for a tab
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png}",
                Path(html).resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return png

"""The image, built and run: ``scripts/image_test.sh`` builds the Dockerfile with buildah (CPU torch, a base made
from Debian packages) and checks /ready, a chat completion, the non-root user and the read-only weights mount.

The script exits 77 with ``skip: <reason>`` where buildah cannot run (not root, packages missing, no package index);
the test then skips with that reason. ``.ci/run`` installs buildah and debootstrap."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(1500)


def test_the_image_builds_and_answers_as_a_non_root_user_over_read_only_weights(tmp_path: Path) -> None:
    env = {**os.environ, "GPTOSS_IMAGE_PORT": str(free_port()), "GPTOSS_IMAGE_WORK": str(tmp_path / "work")}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "image_test.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1400)
    if proc.returncode == 77:
        reason = next((line[len("skip: "):] for line in proc.stderr.splitlines() if line.startswith("skip: ")),
                      "buildah cannot run here")
        pytest.skip(reason)
    assert proc.returncode == 0, proc.stderr[-4000:]

"""The rooms install as spx.<room>; ./platform never shadows the standard library."""

import subprocess
import sys

from helpers import REPO

ROOMS = ("platform", "workers", "search", "kernels", "dashboards")


def test_stdlib_platform_is_not_shadowed_from_the_repo_root():
    out = subprocess.run(
        [sys.executable, "-c", "import platform, torch; print(platform.system())"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "Linux"


def test_pytest_collects_from_the_repo_root():
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-q", "tests/test_layout.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "test_stdlib_platform_is_not_shadowed_from_the_repo_root" in out.stdout


def test_rooms_have_no_top_level_init_and_import_as_subpackages():
    for room in ROOMS:
        assert not (REPO / room / "__init__.py").exists(), room
    import spx.platform.spec
    import spx.workers.loop

    assert spx.platform.spec.__name__ == "spx.platform.spec"
    assert spx.workers.loop.__file__.endswith("workers/loop.py")

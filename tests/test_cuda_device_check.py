"""benchmarks/device_check.sh: its --dry-run passes on a CPU machine, and it refuses a wheel set that cannot travel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "device_check.sh"


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "PYTHON": sys.executable, **env})


@pytest.mark.slow
def test_dry_run_checks_every_step_on_a_cpu_machine(tmp_path):
    # as on the GPU machine: no OpenCV, av or DALI (imports of them fail in every Python the script starts)
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class Absent(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('cv2', 'av') or name.startswith('nvidia.dali'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Absent())\n")
    out = run("--dry-run", OUT=str(tmp_path), PYTHONPATH=str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    for step in ("1/5 wheel set", "2/5 native extension", "3/5 GPU tests", "4/5 echoclr bench train",
                 "5/5 GPU loader rows", "done"):
        assert step in out.stdout, step
    assert "tests collected" in out.stdout  # pytest -m cuda collected the GPU tests
    assert "--no-end-to-end --out" in out.stdout and "options parse" in out.stdout
    assert "echoclr.bench.train: imports" in out.stdout and "cv2" not in out.stdout
    assert "gather index ok" in out.stdout and "GFLOP per training clip" in out.stdout


def test_a_wheel_set_over_64_mib_or_an_unknown_option_is_refused(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with open(wheels / "big-1.0-py3-none-any.whl", "wb") as f:
        f.truncate(65 * 1024 * 1024)  # sparse: no disk used
    out = run("--dry-run", ECHOCLR_WHEELS=str(wheels), OUT=str(tmp_path))
    assert out.returncode == 1 and "over the 64 MiB" in out.stderr, out.stdout + out.stderr
    out = run("--fast")
    assert out.returncode == 2 and "unknown option '--fast'" in out.stderr

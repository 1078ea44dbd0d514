"""Wrong invocations of every command, through the real console script: one ``error:`` line, no traceback, and
the documented exit code (2 bad input/usage, 1 the run failed)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ECHOCLR = str(Path(sys.executable).parent / "echoclr")
USAGE, RUNTIME = 2, 1


@pytest.fixture(scope="module")
def places(tmp_path_factory, tiny_store):
    """Paths the wrong invocations point at: a folder that is not a store, a bad manifest, bad prediction CSVs."""
    root = tmp_path_factory.mktemp("cli_errors")
    (root / "notastore").mkdir()
    (root / "notastore" / "thesis.txt").write_text("years of work")
    (root / "bad_manifest.csv").write_text("file,patient\na.avi,1\n")
    (root / "bad_preds.csv").write_text("study,prob\ns1,0.5\n")
    # a broken DALI install: importing nvidia.dali fails the way a wheel for another CUDA/glibc does
    (root / "nodali" / "nvidia" / "dali").mkdir(parents=True)
    # nvidia is a regular package in site-packages: extend its path so nvidia.dali is found here first
    (root / "nodali" / "nvidia" / "__init__.py").write_text(
        "from pkgutil import extend_path\n__path__ = extend_path(__path__, __name__)\n"
    )
    (root / "nodali" / "nvidia" / "dali" / "__init__.py").write_text(
        "raise ImportError('libdali.so: cannot open shared object file')\n"
    )
    return {"root": root, "store": str(tiny_store)}


# (id, argv with {root}/{store} placeholders, expected exit code, text the error line must contain, extra env)
CASES = [
    ("info-missing", ["info", "{root}/nope"], USAGE, "nope", None),
    ("info-not-a-store", ["info", "{root}/notastore"], USAGE, "notastore", None),
    ("info-unknown-option", ["info", "{store}", "--bogus"], USAGE, "--bogus", None),
    ("synth-non-empty", ["synth", "{root}/notastore"], USAGE, "notastore", None),
    ("ingest-missing-manifest", ["ingest", "{root}/nope.csv", "--out", "{root}/s1"], USAGE, "nope.csv", None),
    ("ingest-bad-columns", ["ingest", "{root}/bad_manifest.csv", "--out", "{root}/s2"], USAGE, "path", None),
    ("ingest-into-foreign-folder", ["ingest", "{root}/bad_manifest.csv", "--out", "{root}/notastore"], USAGE,
     "", None),
    ("pretrain-missing-store", ["pretrain", "{root}/nope", "--out", "{root}/p1"], USAGE, "nope", None),
    ("pretrain-bad-lr", ["pretrain", "{store}", "--out", "{root}/p2", "--lr", "-1"], USAGE, "lr", None),
    ("pretrain-no-dali", ["pretrain", "{store}", "--out", "{root}/p4", "--device", "cpu", "--batch-size", "4",
                          "--max-steps", "1", "--threads", "1"], RUNTIME, "DALI", "nodali"),
    ("finetune-unknown-label", ["finetune", "{store}", "--label", "nosuch", "--out", "{root}/f1", "--device", "cpu"],
     USAGE, "nosuch", None),
    ("finetune-bad-ratios", ["finetune", "{store}", "--label", "lvh", "--out", "{root}/f2", "--ratios", "ten"],
     USAGE, "ten", None),
    ("gradcam-missing-checkpoint", ["gradcam", "{root}/nope_ft", "{store}", "--out", "{root}/g"], USAGE, "nope_ft",
     None),
    ("eval-run-missing-checkpoint", ["eval", "run", "{root}/nope_ft", "{store}"], USAGE, "nope_ft", None),
    ("eval-compare-bad-columns", ["eval", "compare", "{root}/bad_preds.csv", "{root}/bad_preds.csv"], USAGE,
     "bad_preds.csv", None),
    ("experiment-bad-ratios", ["experiment", "{store}", "--label", "lvh", "--out", "{root}/e", "--ratios", "x"],
     USAGE, "x", None),
    ("demo-bad-ratios", ["demo", "--out", "{root}/d", "--ratios", "half"], USAGE, "half", None),
    ("demo-overwrite-foreign-folder", ["demo", "--out", "{root}/notastore", "--overwrite"], USAGE, "notastore",
     None),
    ("bench-table-empty", ["bench", "table", "{root}/nope_results"], RUNTIME, "nope_results", None),
]


def _run(argv: list[str], places: dict, env_extra: str | None) -> subprocess.CompletedProcess:
    args = [a.format(**places) for a in argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if env_extra == "nodali":
        env["PYTHONPATH"] = f"{places['root'] / 'nodali'}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run([ECHOCLR, *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def outcomes(places):
    """Every case run once, four at a time (each is a fresh process importing torch: seconds of start-up)."""
    with ThreadPoolExecutor(4) as pool:
        futures = {case[0]: pool.submit(_run, case[1], places, case[4]) for case in CASES}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name,code,needle", [(c[0], c[2], c[3]) for c in CASES], ids=[c[0] for c in CASES])
def test_wrong_invocation_prints_one_error_line(outcomes, name, code, needle):
    done = outcomes[name]
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    if done.returncode == USAGE and "error:" not in done.stderr:  # click's own usage errors (unknown option)
        assert "Usage:" in done.stderr and needle in done.stderr
        return
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    assert needle in errors[0], errors[0]
    assert "unexpected" not in errors[0], errors[0]


def test_nothing_was_lost(places, outcomes):
    """After the whole matrix (which pointed synth, ingest and demo --overwrite at it) the unrelated file is intact."""
    assert (places["root"] / "notastore" / "thesis.txt").read_text() == "years of work"


def test_debug_shows_the_traceback(places):
    done = _run(["--debug", "info", "{root}/nope"], places, None)
    assert done.returncode == 1  # Python's own exit code for an uncaught exception
    assert "Traceback" in done.stderr and "FileNotFoundError" in done.stderr

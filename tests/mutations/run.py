"""Mutation check: apply each curated mutation of ``catalogue.py`` to a temporary copy of the
repository, run the fast tests meant to catch it, and print the survivors and the run time.

``make mutations`` runs it (not part of the default pytest run: one pytest process per mutation).
A mutation is *killed* when its tests fail (pytest exit code 1), *survives* when they pass, and
is an *error* when pytest cannot run them (collection error, no test selected, timeout).
Before any mutation the unmutated copy must pass every selected test, and every mutation's
pattern must occur exactly once in its file (a stale catalogue is an error, not a pass).

    python tests/mutations/run.py                  # all mutations
    python tests/mutations/run.py --only soft-threshold csa-cos-area   # some of them
    python tests/mutations/run.py --list

Exit status: 0 when every mutation is killed, 1 when some survive, 2 on errors.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO)]

from catalogue import MUTATIONS, Mutation  # noqa: E402

from core.paths import shared_data_dir  # noqa: E402  (the real data, for the copy's tests)

SKIP_DIRS = {
    ".git",
    ".venv",
    "outputs",
    "runs",
    "wandb",
    "ray_results",
    "lightning_logs",
    ".pytest_cache",
    "__pycache__",
    "build",
    "dist",
}


def copy_repo(dst: Path) -> Path:
    """Copy the working tree (without caches, venv, outputs) to ``dst``."""

    def ignore(d: str, names: list[str]) -> set[str]:
        # a folder named like an output folder but holding Python modules (the runs/ package) is code
        return {
            n
            for n in names
            if (n in SKIP_DIRS and not any((Path(d) / n).glob("*.py"))) or n.endswith((".pyc", ".egg-info", ".ckpt"))
        }

    shutil.copytree(REPO, dst, ignore=ignore, symlinks=True)
    return dst


def check_patterns(root: Path, mutations: list[Mutation]) -> list[str]:
    """Problems with the catalogue on this tree: a pattern not found exactly once, a missing test file."""
    problems = []
    for m in mutations:
        path = root / m.path
        if not path.is_file():
            problems.append(f"{m.name}: {m.path} not found")
            continue
        n = path.read_text().count(m.old)
        if n != 1:
            problems.append(f"{m.name}: pattern found {n} times in {m.path} (expected once): {m.old!r}")
        for t in m.tests:
            if not (root / t.split("::")[0]).is_file():
                problems.append(f"{m.name}: test file {t} not found")
    return problems


def pytest_cmd(tests: list[str], k: str | None = None) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        "not slow",
        "--no-header",
        "-o",
        "addopts=--strict-markers",
        *tests,
    ]
    if k:
        cmd += ["-k", k]
    return cmd


def copy_env(root: Path) -> dict[str, str]:
    # the copy lives in a temporary folder: point it at the real data, and let a test that
    # needs them fail rather than skip (CI=true, see tests/conftest.py)
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "PYTHONDONTWRITEBYTECODE": "1",
        "CI": "true",
        "CORDBENCH_DATA": str(shared_data_dir().resolve()),
    }
    env.pop("PYTEST_ADDOPTS", None)
    return env


def check_imports(root: Path, mutations: list[Mutation]) -> list[str]:
    """Mutated modules that the copy's tests would import from elsewhere (e.g. an editable install
    of another checkout shadowing a package of the copy): their mutations could never be caught."""
    mods = sorted({m.path[:-3].replace("/", ".") for m in mutations if m.path.endswith(".py")})
    code = (
        "import importlib.util, sys\nfor m in sys.argv[1:]:\n"
        "    s = importlib.util.find_spec(m)\n    print(m, s.origin if s else None)"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, *mods], cwd=root, env=copy_env(root), capture_output=True, text=True, check=False
    )
    if p.returncode != 0:
        return [f"cannot import the mutated modules in the copy: {last_lines(p.stderr)}"]
    problems = []
    for line in p.stdout.splitlines():
        mod, origin = line.split(" ", 1)
        want = root / (mod.replace(".", "/") + ".py")
        if origin == "None" or Path(origin).resolve() != want.resolve():
            problems.append(f"{mod} is imported from {origin}, not from the mutated copy {want}")
    return problems


def run_pytest(root: Path, cmd: list[str], timeout: float) -> tuple[int, float, str]:
    env = copy_env(root)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out = -1, f"timeout after {timeout:.0f} s\n{exc.stdout or ''}"
    return rc, time.perf_counter() - t0, out


def last_lines(text: str, n: int = 6) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join("      " + ln for ln in lines[-n:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="run only these mutations (names)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest run")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run (faster, less safe)")
    args = ap.parse_args(argv)
    mutations = list(MUTATIONS)
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in mutations})
        if unknown:
            print(f"error: unknown mutation(s) {', '.join(unknown)}", file=sys.stderr)
            return 2
        mutations = [m for m in mutations if m.name in args.only]
    if args.list:
        for m in mutations:
            print(f"{m.name:28s} {m.path}: {m.why}")
        return 0
    # a kill (timeout, Ctrl-C) still stops pytest and removes the temporary copy
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cordbench-mutations-") as tmp:
        root = copy_repo(Path(tmp) / "repo")
        problems = check_patterns(root, mutations) or check_imports(root, mutations)
        if problems:
            print("error: the catalogue does not match the code:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 2
        if not args.no_baseline:
            groups: dict[str | None, list[str]] = {}
            for m in mutations:
                groups.setdefault(m.k, [])
                groups[m.k] += [t for t in m.tests if t not in groups[m.k]]
            whole = set(groups.get(None, []))  # a file run whole needs no narrowed baseline too
            for k, tests in list(groups.items()):
                if k is not None:
                    tests = [t for t in tests if t not in whole]
                if not tests:
                    continue
                rc, secs, out = run_pytest(root, pytest_cmd(tests, k), args.timeout)
                print(f"baseline ({len(tests)} test file(s){', -k ' + k if k else ''}): rc {rc}, {secs:.0f} s")
                if rc != 0:
                    print("error: the unmutated code fails its tests:\n" + last_lines(out, 20), file=sys.stderr)
                    return 2
        results = []
        for i, m in enumerate(mutations, 1):
            path = root / m.path
            original = path.read_text()
            path.write_text(original.replace(m.old, m.new, 1))
            try:
                rc, secs, out = run_pytest(root, pytest_cmd(list(m.tests), m.k), args.timeout)
            finally:
                path.write_text(original)
            status = "killed" if rc == 1 else "SURVIVED" if rc == 0 else "ERROR"
            results.append((m, status))
            print(f"[{i:2d}/{len(mutations)}] {status:8s} {m.name:28s} {secs:6.1f} s  ({m.path})", flush=True)
            if status != "killed":
                print(last_lines(out))
    survived = [m.name for m, s in results if s == "SURVIVED"]
    errors = [m.name for m, s in results if s == "ERROR"]
    total = time.perf_counter() - t_start
    print(
        f"\n{len(results)} mutations: {len(results) - len(survived) - len(errors)} killed, "
        f"{len(survived)} survived, {len(errors)} errors; run time {total:.0f} s"
    )
    if survived:
        print("survivors: " + ", ".join(survived))
    if errors:
        print("errors: " + ", ".join(errors))
    return 2 if errors else 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())

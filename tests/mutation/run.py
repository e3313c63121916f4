"""Mutation testing of the modules that decide correctness (``make mutation``; docs/testing.md).

Each module of ``modules.toml`` is run on its own: a scratch copy of the repository under
``.mutation/<module>/`` (the working tree is never touched), mutmut configured to mutate that
module's files and to run only that module's tests (mutmut then runs, for each mutant, the tests
among those that call the mutated function). A mutant that survives must be listed as equivalent
in docs/testing.md (function, the line before and after, the reason), or as a known survivor (one that
could change behaviour but no test catches yet, and why); the run fails when a module kills less than
``--min-score`` of its mutants, leaves a survivor that is not listed, or lists one for its files that no
survivor of the run matches (killed now, or its line has changed).

    .venv/bin/python tests/mutation/run.py                 # every module
    .venv/bin/python tests/mutation/run.py parity topdown  # some
    .venv/bin/python tests/mutation/run.py --list          # the modules and their tests
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
MODULES = Path(__file__).with_name("modules.toml")
DOC = ROOT / "docs" / "testing.md"
SCRATCH = ROOT / ".mutation"
# What a scratch copy holds: the package, the tests, and the data files tests read from the checkout.
COPIED = ("edgepose", "tests", "export", "devices", "benchmarks/papers", "pyproject.toml")
KILLED, TIMEOUT, SURVIVED, NO_TESTS = "killed", "timeout", "survived", "no tests"
# mutmut's exit codes per mutant (mutmut/stats.py): which count as the tests catching the mutant.
STATUS = {
    1: KILLED,
    3: KILLED,
    0: SURVIVED,
    5: NO_TESTS,
    33: NO_TESTS,
    36: TIMEOUT,
    24: TIMEOUT,
    -24: TIMEOUT,
}
# An equivalent mutant in docs/testing.md: - `function`: `line before` → `line after` — reason
EQUIVALENT = re.compile(r"^- `(?P<function>[\w.]+)`: `(?P<before>.*)` → `(?P<after>.*)` — (?P<reason>.+)$")


@dataclass(frozen=True)
class Mutant:
    name: str  # mutmut's: edgepose.export.parity.x_gate__mutmut_11
    status: str
    function: str  # module.function or module.Class.method
    before: str  # the changed line(s), stripped, " / "-joined
    after: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self.function, self.before, self.after


def load_modules() -> dict[str, dict]:
    return tomllib.loads(MODULES.read_text())


def load_equivalents() -> dict[tuple[str, str, str], tuple[str, str]]:
    """The listed survivors of docs/testing.md: key -> (section, reason); sections "equivalent", "known"."""
    out, section = {}, None
    for line in DOC.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            section = (
                "equivalent"
                if title.startswith("equivalent")
                else "known"
                if title.startswith("known")
                else None
            )
            continue
        found = EQUIVALENT.match(line)
        if found and section:
            out[found["function"], found["before"], found["after"]] = (section, found["reason"])
    return out


def mutmut_config(spec: dict) -> str:
    """The [tool.mutmut] table for one module (appended to the copy's pyproject.toml)."""
    return "\n".join(
        [
            "",
            "[tool.mutmut]",
            'source_paths = ["edgepose"]',
            f"only_mutate = {json.dumps(spec['mutate'])}",
            f"pytest_add_cli_args_test_selection = {json.dumps(spec['tests'])}",
            # -p no:cacheprovider: nothing written into the copy's tests; -x: one failure kills the mutant
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]',
            'also_copy = ["export", "devices", "benchmarks"]',
            # A mutant that loops forever (e.g. the assignment solver's greedy start) is stopped after
            # multiplier x (its tests' clean time + constant) seconds and counts as caught.
            f"timeout_multiplier = {float(spec.get('timeout_multiplier', 5.0))}",
            "timeout_constant = 2.0",
            "use_git_change_detection = false",
            "",
        ]
    )


def prepare(name: str, spec: dict) -> Path:
    """A fresh scratch copy of the repository for ``name``, configured for mutmut."""
    work = SCRATCH / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for item in COPIED:
        src, dst = ROOT / item, work / item
        if src.is_dir():
            shutil.copytree(src, dst, ignore=ignore)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    with open(work / "pyproject.toml", "a") as fh:
        fh.write(mutmut_config(spec))
    return work


def function_of(mutant: str) -> str:
    """``edgepose.x.y.xǁCǁm__mutmut_3`` -> ``edgepose.x.y.C.m``; ``...x_f__mutmut_3`` -> ``....f``."""
    module, _, mangled = mutant.partition("__mutmut_")[0].rpartition(".")
    if "ǁ" in mangled:
        _, cls, method = mangled.split("ǁ")
        return f"{module}.{cls}.{method}"
    return f"{module}.{mangled[2:]}"


def changed_lines(work: Path, mutant: str, path: str) -> tuple[str, str]:
    """The lines a mutant changes (stripped; several joined by ' / '): the diff ``mutmut show`` prints,
    made in this process (a ``mutmut show`` per survivor costs a second or two of start-up each)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    here = os.getcwd()
    os.chdir(work)  # mutmut reads mutants/<path> relative to the working folder
    try:
        shown = get_diff_for_mutant(mutant, path=path).splitlines()
    finally:
        os.chdir(here)
    body = [line for line in shown if not line.startswith(("---", "+++", "@@"))]
    before = " / ".join(line[1:].strip() for line in body if line.startswith("-"))
    after = " / ".join(line[1:].strip() for line in body if line.startswith("+"))
    return before, after


def results(work: Path, spec: dict) -> list[Mutant]:
    out = []
    for path in spec["mutate"]:
        meta = json.loads((work / "mutants" / (path + ".meta")).read_text())
        for name, code in sorted(meta["exit_code_by_key"].items()):
            status = STATUS.get(code, f"exit code {code}")
            before, after = changed_lines(work, name, path) if status not in (KILLED, TIMEOUT) else ("", "")
            out.append(Mutant(name, status, function_of(name), before, after))
    return out


def run_module(name: str, spec: dict, children: int) -> tuple[list[Mutant], float]:
    work = prepare(name, spec)
    start = time.monotonic()
    log = work / "mutmut.log"
    with open(log, "w") as fh:
        done = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(children)],
            cwd=work,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
    elapsed = time.monotonic() - start
    (work / "elapsed_s").write_text(f"{elapsed:.1f}\n")
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"mutmut failed on {name} (exit {done.returncode}); the end of {log}:\n{tail}")
    return results(work, spec), elapsed


def last_run(name: str, spec: dict) -> tuple[list[Mutant], float]:
    """The results of the last ``run_module(name)``, read again (e.g. after docs/testing.md changed)."""
    work = SCRATCH / name
    if not (work / "elapsed_s").exists():
        raise SystemExit(f"no finished run of {name} under {work}; run it first")
    return results(work, spec), float((work / "elapsed_s").read_text())


def stale_entries(spec: dict, mutants: list[Mutant], equivalents: dict) -> list[tuple[str, str, str]]:
    """Listed survivors of this module's files that this run did not leave alive or time out: caught now
    (the listing was wrong) or of a line that has changed since."""
    prefixes = tuple(path[: -len(".py")].replace("/", ".") + "." for path in spec["mutate"])
    alive = {m.key for m in mutants if m.status != KILLED}
    return [key for key in equivalents if key[0].startswith(prefixes) and key not in alive]


def report(
    name: str, spec: dict, mutants: list[Mutant], elapsed: float, equivalents: dict, min_score: float
) -> bool:
    """Print one module's figures, its unexplained survivors and stale listings; True when the module passes."""
    count = {s: sum(m.status == s for m in mutants) for s in (KILLED, TIMEOUT, SURVIVED, NO_TESTS)}
    caught = count[KILLED] + count[TIMEOUT]
    missed = [m for m in mutants if m.status not in (KILLED, TIMEOUT)]
    unexplained = [m for m in missed if m.key not in equivalents]
    equivalent = sum(equivalents.get(m.key, ("",))[0] == "equivalent" for m in missed)
    known = len(missed) - len(unexplained) - equivalent
    total = len(mutants)
    score = caught / total if total else 1.0
    print(
        f"{name}: {total} mutants, {count[KILLED]} killed, {count[TIMEOUT]} timed out, "
        f"{equivalent} equivalent, {known} known survivors, {len(unexplained)} unexplained "
        f"({count[NO_TESTS]} reached by no test); score {100 * score:.1f}% "
        f"({100 * caught / max(total - equivalent, 1):.1f}% of the non-equivalent) in {elapsed:.0f} s",
        flush=True,
    )
    for m in unexplained:
        print(f"  {m.status}: {m.name}\n    - `{m.function}`: `{m.before}` → `{m.after}` — ")
    stale = stale_entries(spec, mutants, equivalents)
    for function, before, after in stale:
        print(f"  listed in {DOC.name} but no survivor of this run (remove or update it):")
        print(f"    - `{function}`: `{before}` → `{after}`")
    return score >= min_score and not unexplained and not stale


def main(argv: list[str] | None = None) -> int:
    modules = load_modules()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"default: all ({', '.join(modules)})")
    parser.add_argument("--list", action="store_true", help="print the modules, their files and tests")
    parser.add_argument("--min-score", type=float, default=0.9)
    # One mutant at a time by default: a shared 2-core host (run it under `nice -n 10`).
    parser.add_argument("--children", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument(
        "--report",
        action="store_true",
        help="re-read the last run's results (.mutation/<module>/), run nothing",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(modules))
    if unknown:
        parser.error(f"unknown modules {unknown}; known: {', '.join(modules)}")
    chosen = args.modules or list(modules)
    if args.list:
        for name in chosen:
            print(f"{name}: {' '.join(modules[name]['mutate'])}\n  tests: {' '.join(modules[name]['tests'])}")
        return 0
    equivalents = load_equivalents()
    ok = True
    for name in chosen:
        if args.report:
            mutants, elapsed = last_run(name, modules[name])
        else:
            mutants, elapsed = run_module(name, modules[name], args.children)
        ok &= report(name, modules[name], mutants, elapsed, equivalents, args.min_score)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

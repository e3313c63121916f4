"""The mutation runner's bookkeeping (tests/mutation/run.py): docs/testing.md's lists parse, and a listing
that no survivor matches any more is reported (runs of mutmut itself: `make mutation`, docs/testing.md)."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).with_name("mutation") / "run.py"


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location("mutation_run", RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_every_listed_survivor_in_docs_testing_md_parses(run):
    # A bullet under "Equivalent mutants" or "Known survivors" that the runner cannot read would leave
    # its mutant unexplained (and the run failing) with no hint why.
    text = run.DOC.read_text()
    sections = re.split(r"^### ", text, flags=re.M)
    bullets = [
        line
        for section in sections
        if section.lower().startswith(("equivalent", "known"))
        for line in section.splitlines()
        if line.startswith("- ")
    ]
    assert len(bullets) > 50
    unreadable = [line for line in bullets if not run.EQUIVALENT.match(line)]
    assert unreadable == []
    listed = run.load_equivalents()
    assert len(listed) == len(bullets)  # no line listed twice
    mutated = tuple(
        path[: -len(".py")].replace("/", ".") + "."
        for spec in run.load_modules().values()
        for path in spec["mutate"]
    )
    assert [function for function, _, _ in listed if not function.startswith(mutated)] == []


def test_function_names_from_mutmut_names(run):
    assert run.function_of("edgepose.export.parity.x_gate__mutmut_11") == "edgepose.export.parity.gate"
    assert (
        run.function_of("edgepose.device.decode_bottomup.xǁLazyTagsǁat__mutmut_50")
        == "edgepose.device.decode_bottomup.LazyTags.at"
    )


def test_a_listing_that_no_survivor_matches_is_stale(run):
    spec = {"mutate": ["edgepose/device/grouping.py"]}
    mine = ("edgepose.device.grouping.group_peaks", "a", "b")
    gone = ("edgepose.device.grouping.crowd_assign", "c", "d")
    other = ("edgepose.export.parity.gate", "e", "f")  # another module's: not this run's business
    listed = {key: ("equivalent", "why") for key in (mine, gone, other)}

    def mutant(key, status):
        return run.Mutant("n", status, *key)

    assert run.stale_entries(spec, [mutant(mine, run.SURVIVED), mutant(gone, run.KILLED)], listed) == [gone]
    assert run.stale_entries(spec, [mutant(mine, run.TIMEOUT), mutant(gone, run.SURVIVED)], listed) == []

#!/usr/bin/env python3
"""Validate klpt's reports with other people's readers, then against each other.

  KCIDB  kcidb-io's schema (kcidb_io.schema.LATEST.validate, formats checked),
         plus ids unique and every reference resolved;
  KTAP   the kernel tree's own parser, tools/testing/kunit/kunit_parser.py,
         with no parse errors, its counts matching the `# Totals:` line;
  JUnit  junitparser, each suite's tests/failures/errors/skipped attributes
         matching its test cases.

Then every report given must count the same trials as ok / not ok / skipped
(an expected failure is ok: KTAP `ok # XFAIL`, KCIDB FAIL with an incident),
and KTAP and KCIDB must name the same trials.

Run it with the venv of ci/python-env.sh:
  "$(ci/python-env.sh)" ci/validate_reports.py --kcidb R.json --ktap R.ktap --junit R.xml
"""

import argparse
import copy
import glob
import io
import json
import os
import re
import sys
from collections import Counter

BUCKETS = ("ok", "not ok", "skip")


class Invalid(Exception):
    pass


def kcidb(path):
    """The KCIDB report's trials: {trial name: bucket}."""
    import jsonschema
    from kcidb_io import schema

    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    # A check that cannot fail is no check: without jsonschema's format
    # checkers (rfc3987, rfc3339-validator) URLs and times go unchecked.
    probe = {"version": {"major": schema.LATEST.major, "minor": schema.LATEST.minor},
             "checkouts": [{"id": "x:1", "origin": "x", "log_url": "not a uri"}]}
    if schema.LATEST.is_valid(probe):
        raise Invalid("kcidb-io accepted a malformed URL: jsonschema's format checkers are missing (rerun ci/python-env.sh)")
    try:
        schema.LATEST.validate(data)
    except jsonschema.exceptions.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path)
        raise Invalid(f"{path}: not valid KCIDB {schema.LATEST}: at {where or 'top level'}: {e.message}") from None
    ids = {}
    for kind in ("checkouts", "builds", "tests", "issues", "incidents"):
        objs = data.get(kind, [])
        ids[kind] = {o["id"] for o in objs}
        if len(ids[kind]) != len(objs):
            dup = [i for i, n in Counter(o["id"] for o in objs).items() if n > 1]
            raise Invalid(f"{path}: {kind}: duplicate ids {dup[:3]}")
    refs = [("builds", "checkout_id", "checkouts"), ("tests", "build_id", "builds"),
            ("incidents", "test_id", "tests"), ("incidents", "issue_id", "issues")]
    for kind, field, target in refs:
        for o in data.get(kind, []):
            if field in o and o[field] not in ids[target]:
                raise Invalid(f"{path}: {kind} {o['id']}: {field} {o[field]} is not in {target}")
    known = {i["test_id"] for i in data.get("incidents", []) if i.get("present") and "test_id" in i}
    trials = {}
    for t in data.get("tests", []):
        name = t.get("misc", {}).get("trial")
        if not name or "status" not in t or "path" not in t:
            raise Invalid(f"{path}: test {t['id']} lacks misc.trial, status or path")
        s = t["status"]
        if s in ("PASS", "DONE") or (s == "FAIL" and t["id"] in known):
            trials[name] = "ok"
        elif s == "SKIP":
            trials[name] = "skip"
        else:
            trials[name] = "not ok"
    print(f"KCIDB {path}: valid {schema.LATEST}; {len(ids['checkouts'])} checkouts, "
          f"{len(ids['builds'])} builds, {len(trials)} tests, {len(ids['issues'])} known issues")
    return trials


def kernel_tree(given):
    """A kernel tree holding tools/testing/kunit/kunit_parser.py."""
    if given:
        cands = [given]
    else:
        cache = os.environ.get("KLPT_CACHE") or os.path.expanduser("~/.cache/klpt")
        # Debian's unpacked linux-source first, then klpt's series copies.
        cands = sorted(glob.glob(f"{cache}/src/linux-source-*/tree")) + sorted(glob.glob(f"{cache}/src/*"))
    for c in cands:
        if os.path.isfile(os.path.join(c, "tools/testing/kunit/kunit_parser.py")):
            return c
    if given:
        raise Invalid(f"{given}: no tools/testing/kunit/kunit_parser.py in it")
    raise Invalid("no kernel tree in klpt's cache (klpt kernel build unpacks one); pass --kernel-tree DIR")


def ktap(path, tree):
    """The KTAP report's trials, read by the kernel's own parser: {name: bucket}."""
    sys.path.insert(0, os.path.join(tree, "tools/testing/kunit"))
    import kunit_parser
    import kunit_printer

    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    log = io.StringIO()
    root = kunit_parser.parse_run_tests(lines, kunit_printer.Printer(output=log))
    if root.counts.errors or root.status == kunit_parser.TestStatus.FAILURE_TO_PARSE_TESTS:
        raise Invalid(f"{path}: the kernel's KTAP parser reports {root.counts.errors} error(s):\n{log.getvalue()}")

    def leaves(t, prefix):
        if not t.subtests:
            yield prefix + t.name, t
        for s in t.subtests:
            yield from leaves(s, prefix + (t.name + "/" if t is not root and t.name else ""))

    bucket = {kunit_parser.TestStatus.SUCCESS: "ok", kunit_parser.TestStatus.SKIPPED: "skip"}
    trials = {}
    for name, t in leaves(root, ""):
        if t is root:
            continue
        if name in trials:
            raise Invalid(f"{path}: trial {name} appears twice")
        trials[name] = bucket.get(t.status, "not ok")
    c = root.counts
    if c.total() != len(trials):
        raise Invalid(f"{path}: the parser counts {c.total()} tests but yields {len(trials)}")
    totals = [l for l in lines if l.startswith("# Totals:")]
    if not totals:
        raise Invalid(f"{path}: no `# Totals:` line")
    tot = {k: int(v) for k, v in re.findall(r"(\w+):(\d+)", totals[-1])}
    n = Counter(trials.values())
    # XPASS may be written `ok … # XPASS` (kselftest) or `not ok` (a failure).
    ok_min = tot.get("pass", 0) + tot.get("xfail", 0)
    if sum(tot.values()) != len(trials) or tot.get("skip", 0) != n["skip"] or not ok_min <= n["ok"] <= ok_min + tot.get("xpass", 0):
        raise Invalid(f"{path}: `{totals[-1].strip()}` does not match the parsed results ({c})")
    print(f"KTAP {path}: kernel parser ({tree}): {c}; totals line agrees")
    return trials


def junit(path):
    """The JUnit report's trials, read by junitparser: {classname/name: bucket}."""
    from junitparser import Error, Failure, JUnitXml, Skipped, TestSuite

    xml = JUnitXml.fromfile(path)
    suites = [xml] if isinstance(xml, TestSuite) else list(xml)
    trials = {}
    for s in suites:
        n = Counter()
        for case in s:
            kinds = {type(r) for r in case.result}
            b = "not ok" if kinds & {Failure, Error} else "skip" if Skipped in kinds else "ok"
            n[b] += 1
            n["failures"] += Failure in kinds
            n["errors"] += Error in kinds
            n["skipped"] += Skipped in kinds
            if not case.name:
                raise Invalid(f"{path}: suite {s.name}: a test case without a name")
            key = f"{case.classname}/{case.name}" if case.classname else case.name
            if key in trials:
                raise Invalid(f"{path}: test case {key} appears twice")
            trials[key] = b
        cases = n["ok"] + n["not ok"] + n["skip"]
        for attr, want in (("tests", cases), ("failures", n["failures"]), ("errors", n["errors"]), ("skipped", n["skipped"])):
            got = getattr(s, attr)
            if got is not None and int(got) != want:
                raise Invalid(f"{path}: suite {s.name}: {attr}=\"{got}\" but its test cases say {want}")
    print(f"JUnit {path}: junitparser: {len(suites)} suite(s), {len(trials)} test cases; suite counts agree")
    return trials


def compare(got, expect_tests=None):
    """The reports ({kind: {trial: bucket}}) agree with each other."""
    counts = {k: tuple(Counter(v.values())[b] for b in BUCKETS) for k, v in got.items()}
    if len(set(counts.values())) > 1:
        raise Invalid("the reports disagree on (ok, not ok, skip): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if expect_tests is not None and any(len(v) != expect_tests for v in got.values()):
        raise Invalid(f"expected {expect_tests} trials: " + ", ".join(f"{k} {len(v)}" for k, v in got.items()))
    if "KCIDB" in got and "KTAP" in got:
        # KTAP has no '#' in names (a directive would start there).
        want = {n.replace("#", "_"): b for n, b in got["KCIDB"].items()}
        if want != got["KTAP"]:
            diff = sorted(set(want.items()) ^ set(got["KTAP"].items()))[:5]
            raise Invalid(f"KTAP and KCIDB disagree on trials (name, bucket), e.g. {diff}")
    print("reports agree: " + ", ".join(f"{b} {n}" for b, n in zip(BUCKETS, next(iter(counts.values())))))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kcidb", help="KCIDB JSON report")
    p.add_argument("--ktap", help="KTAP report")
    p.add_argument("--junit", help="JUnit XML report")
    p.add_argument("--kernel-tree", help="kernel tree for the KTAP parser (default: klpt's cache)")
    p.add_argument("--expect-tests", type=int, help="the number of trials every report must hold")
    a = p.parse_args()
    if not (a.kcidb or a.ktap or a.junit):
        p.error("give at least one of --kcidb, --ktap, --junit")
    try:
        got = {}
        if a.kcidb:
            got["KCIDB"] = kcidb(a.kcidb)
        if a.ktap:
            got["KTAP"] = ktap(a.ktap, kernel_tree(a.kernel_tree))
        if a.junit:
            got["JUnit"] = junit(a.junit)
        compare(got, a.expect_tests)
    except Invalid as e:
        print(f"validate_reports: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

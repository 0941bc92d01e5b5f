#!/usr/bin/env python3
"""The validators must fail on broken reports, or they check nothing.

  "$(ci/python-env.sh)" ci/test_validate_reports.py [--kernel-tree DIR]

Starts from harness/tests/data/kcidb-sample.json (the Rust builder's output,
kept current by its unit test) and small KTAP/JUnit files, and breaks each
in a way a writer bug would.
"""

import copy
import json
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import validate_reports as vr  # noqa: E402

SAMPLE = os.path.join(HERE, "..", "harness", "tests", "data", "kcidb-sample.json")
TREE = None

KTAP = """KTAP version 1
1..3
ok 1 x86_64/k/stock/a
# kernel verdict: it broke
not ok 2 x86_64/k/stock/b
ok 3 x86_64/k/stock/c # SKIP kernel lacks states
# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0
"""

JUNIT = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="klpt" tests="3" failures="1" skipped="1">
<testsuite name="klpt" tests="3" failures="1" skipped="1">
  <testcase classname="x86_64/k" name="stock/a" time="1.0"/>
  <testcase classname="x86_64/k" name="stock/b" time="1.0"><failure message="it broke"/></testcase>
  <testcase classname="x86_64/k" name="stock/c" time="0.0"><skipped message="kernel lacks states"/></testcase>
</testsuite>
</testsuites>
"""


class Reports(unittest.TestCase):
    def write(self, text):
        f = tempfile.NamedTemporaryFile("w", delete=False, suffix=".report")
        f.write(text)
        f.close()
        self.addCleanup(os.unlink, f.name)
        return f.name

    def kcidb_with(self, change):
        with open(SAMPLE, encoding="utf-8") as f:
            data = json.load(f)
        change(data)
        return self.write(json.dumps(data))

    def test_sample_is_valid(self):
        trials = vr.kcidb(SAMPLE)
        self.assertEqual(len(trials), 9)
        # Two expected failures (FAIL with an incident) and two passes are ok.
        self.assertEqual(sorted(trials.values()).count("ok"), 4)

    def test_kcidb_breakages(self):
        def drop_build(d):
            d["builds"].pop()

        def bad_status(d):
            d["tests"][0]["status"] = "XFAIL"

        def bad_path(d):
            d["tests"][0]["path"] = "klpt.stock.a b"

        def relative_url(d):
            d["tests"][0]["log_url"] = "x86_64/console.log"

        def dup_test(d):
            d["tests"].append(copy.deepcopy(d["tests"][0]))

        for change in (drop_build, bad_status, bad_path, relative_url, dup_test):
            with self.subTest(change.__name__), self.assertRaises(vr.Invalid):
                vr.kcidb(self.kcidb_with(change))

    def test_ktap(self):
        self.assertEqual(vr.ktap(self.write(KTAP), TREE),
                         {"x86_64/k/stock/a": "ok", "x86_64/k/stock/b": "not ok", "x86_64/k/stock/c": "skip"})
        for broken in (KTAP.replace("not ok 2", "not ok 7"),            # numbering
                       KTAP.replace("pass:1 fail:1", "pass:2 fail:0"),  # totals
                       KTAP.replace("# Totals", "# totals"),            # no totals
                       KTAP.replace("1..3", "1..4")):                   # plan
            with self.subTest(broken), self.assertRaises(vr.Invalid):
                vr.ktap(self.write(broken), TREE)

    def test_junit(self):
        self.assertEqual(sorted(vr.junit(self.write(JUNIT)).values()), ["not ok", "ok", "skip"])
        for broken in (JUNIT.replace('failures="1" skipped="1">\n  <testcase', 'failures="0" skipped="1">\n  <testcase'),
                       JUNIT.replace('name="stock/b"', 'name="stock/a"'),
                       JUNIT.replace('name="stock/c"', 'name=""')):
            with self.subTest(broken), self.assertRaises(vr.Invalid):
                vr.junit(self.write(broken))

    def test_reports_must_agree(self):
        ktap = vr.ktap(self.write(KTAP), TREE)
        junit = vr.junit(self.write(JUNIT))
        vr.compare({"KTAP": ktap, "JUnit": junit}, 3)
        with self.assertRaises(vr.Invalid):
            vr.compare({"KTAP": ktap, "JUnit": junit}, 4)
        with self.assertRaises(vr.Invalid):
            vr.compare({"KTAP": ktap, "JUnit": dict(junit, extra="ok")})
        # Same counts, other names: KTAP and KCIDB must name the same trials.
        with self.assertRaises(vr.Invalid):
            vr.compare({"KTAP": ktap, "KCIDB": {k + "x": v for k, v in ktap.items()}})


if __name__ == "__main__":
    if "--kernel-tree" in sys.argv:
        i = sys.argv.index("--kernel-tree")
        TREE = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    TREE = vr.kernel_tree(TREE)
    unittest.main()

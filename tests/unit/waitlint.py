#!/usr/bin/env python3
"""Lints the tests for the flaky-test class "a bound that does not follow
the load" (issue 11): a wait for time to pass, or a timeout written as a
bare number.  On a machine with another make check beside it such a
bound is too short; a test waits for an event, and a bound that only
stops a stuck test is scaled (hplib.scaled(), tests/time_scale.h,
tests/time-scale.sh).  A line that is deliberately not a bound (a random
moment to inject a fault, a measurement span, a poll interval) says so
with the marker "not a bound" in a comment on that line.  One TAP line
per file checked (and the Node client's tests, client/node/test and
support); run from the top of the tree."""

import os
import re
import sys

MARK = "not a bound"
SKIP_DIRS = {"tests/bench", "tests/fixtures", "tests/data"}
# Not run by make check: tools for a person.
SKIP_FILES = {"tests/e2e/record-fixtures.sh", "tests/demo.sh"}
SCALED = re.compile(r"scaled\(|time_scale\(|timeScale\(|api_timeout_ms\(|"
                    r"SCALE\b|scales")

PY = [
    (re.compile(r"\btimeout=\d"), "timeout=N"),
    (re.compile(r"settimeout\(\d"), "settimeout(N)"),
    (re.compile(r"\.(wait|join)\(\d"), ".wait(N) / .join(N)"),
    (re.compile(r"\btime\.sleep\("), "time.sleep"),
]
SH = [
    (re.compile(r"(^|[\s;(|&])timeout\s+\d"), "timeout N"),
    (re.compile(r"-lt\s+\d+\s*\]"), "a wait loop bounded by a bare count"),
]
JS = [
    (re.compile(r"\btimeout:\s*\d"), "timeout: N"),
    (re.compile(r"Date\.now\(\)\s*\+\s*\w"), "a deadline not scaled"),
    (re.compile(r"setTimeout\([^,]+,\s*\d"), "setTimeout(.., N)"),
]
JS_DIRS = ["client/node/test", "client/node/support"]
C = [
    (re.compile(r"\bpoll\([^,()]*,[^,()]*,\s*\d+\s*\)"), "poll(..., N)"),
    (re.compile(r"\b(alarm|sleep)\(\s*[1-9]"), "alarm/sleep(N)"),
    (re.compile(r"\busleep\(|\bnanosleep\("), "usleep/nanosleep"),
    (re.compile(r"tv_sec\s*=\s*[1-9]"), "tv_sec = N"),
    (re.compile(r"struct timeval\s+\w+\s*=\s*\{\s*[1-9]"), "timeval {N, }"),
]


def files():
    for top in JS_DIRS:
        for n in sorted(os.listdir(top) if os.path.isdir(top) else []):
            if n.endswith(".js"):
                yield os.path.join(top, n), JS
    for top, dirs, names in os.walk("tests"):
        dirs[:] = sorted(d for d in dirs
                         if os.path.join(top, d) not in SKIP_DIRS
                         and d != "__pycache__")
        for n in sorted(names):
            p = os.path.join(top, n)
            if p in SKIP_FILES or p == "tests/unit/waitlint.py":
                continue
            if n.endswith(".py"):
                yield p, PY
            elif n.endswith(".sh"):
                yield p, SH
            elif n.endswith(".c") and not n.startswith("fuzz_"):
                yield p, C


def check(path, rules):
    found = []
    with open(path, errors="replace") as f:
        for no, line in enumerate(f, 1):
            if MARK in line or SCALED.search(line):
                continue
            s = line.strip()
            if s.startswith(("def ", "#", "//")):
                continue        # a default the function scales; a comment
            for rx, what in rules:
                if rx.search(line):
                    found.append("%s:%d: %s: %s" % (path, no, what, s))
                    break
    return found


def main():
    todo = list(files())
    print("1..%d" % len(todo))
    failed = 0
    for i, (p, rules) in enumerate(todo, 1):
        found = check(p, rules)
        if found:
            failed += 1
            print("not ok %d - %s: a bound that does not follow the load"
                  % (i, p))
            for x in found:
                print("# " + x)
        else:
            print("ok %d - %s" % (i, p))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Lints the tests for the flaky-test class "a bound that does not follow
the load" (issue 11): a wait for time to pass, or a timeout written as a
bare number or as a name bound to one (T = 30 ... p.wait(T)).  On a machine with another make check beside it such a
bound is too short; a test waits for an event, and a bound that only
stops a stuck test is scaled (hplib.scaled(), tests/time_scale.h,
tests/time-scale.sh).  A line that is deliberately not a bound (a random
moment to inject a fault, a measurement span, a poll interval) says so
with the marker "not a bound" in a comment on that line.  One TAP line
per file checked (and the Node client's tests, client/node/test and
support; the Python in a shell test's here-document too), then one per
case of the lint's own; run from the top of the tree."""

import os
import re
import sys

MARK = "not a bound"
SKIP_DIRS = {"tests/bench", "tests/fixtures", "tests/data"}
# Not run by make check: tools for a person.
SKIP_FILES = {"tests/e2e/record-fixtures.sh", "tests/demo.sh"}
SCALED = re.compile(r"scaled\(|time_scale\(|timeScale\(|api_timeout_ms\(|"
                    r"SCALE\b|scales")

# A bound may be a bare number or a name bound to one (TIMEOUT = 30 then
# .wait(TIMEOUT)): ID is where a rule accepts either; a name counts when
# its file (or a helper module the file imports) binds it to a number or
# to arithmetic on such names.
NUM = r"\d[\d_]*(?:\.\d+)?(?:[eE]-?\d+)?"
ID = r"(?P<qual>(?:[A-Za-z_]\w*\.)*)(?P<name>[A-Za-z_]\w*)\b(?!\s*[(.\[])"

PY = [
    (re.compile(r"\btimeout=\d"), "timeout=N"),
    (re.compile(r"settimeout\(\d"), "settimeout(N)"),
    (re.compile(r"\.(wait|join)\(\d"), ".wait(N) / .join(N)"),
    (re.compile(r"\btime\.sleep\("), "time.sleep"),
    (re.compile(r"\btimeout\s*=\s*" + ID), "timeout=NAME"),
    (re.compile(r"settimeout\(\s*" + ID), "settimeout(NAME)"),
    (re.compile(r"\.(wait|join)\(\s*(timeout\s*=\s*)?" + ID + r"\s*\)"),
     ".wait(NAME) / .join(NAME)"),
    (re.compile(r"\b(monotonic|time)\(\)\s*\+\s*(" + NUM + "|" + ID +
                r")\s*($|[),\]#])"),
     "a deadline not scaled"),
]
SH = [
    (re.compile(r"(^|[\s;(|&])timeout\s+\d"), "timeout N"),
    (re.compile(r"-lt\s+\d+\s*\]"), "a wait loop bounded by a bare count"),
    (re.compile(r"(^|[\s;(|&])timeout\s+\$\{?" + ID), "timeout $NAME"),
    (re.compile(r"-lt\s+\$\{?" + ID + r"\}?\s*\]"),
     "a wait loop bounded by a count in a name"),
]
JS = [
    (re.compile(r"\btimeout:\s*\d"), "timeout: N"),
    (re.compile(r"Date\.now\(\)\s*\+\s*\w"), "a deadline not scaled"),
    (re.compile(r"setTimeout\([^,]+,\s*\d"), "setTimeout(.., N)"),
    (re.compile(r"\btimeout:\s*" + ID), "timeout: NAME"),
    (re.compile(r"setTimeout\([^,]+,\s*" + ID + r"\s*\)"),
     "setTimeout(.., NAME)"),
]
JS_DIRS = ["client/node/test", "client/node/support"]
C = [
    (re.compile(r"\bpoll\([^,()]*,[^,()]*,\s*\d+\s*\)"), "poll(..., N)"),
    (re.compile(r"\b(alarm|sleep)\(\s*[1-9]"), "alarm/sleep(N)"),
    (re.compile(r"\busleep\(|\bnanosleep\("), "usleep/nanosleep"),
    (re.compile(r"tv_sec\s*=\s*[1-9]"), "tv_sec = N"),
    (re.compile(r"struct timeval\s+\w+\s*=\s*\{\s*[1-9]"), "timeval {N, }"),
    (re.compile(r"\bpoll\([^,()]*,[^,()]*,\s*" + ID + r"\s*\)"),
     "poll(..., NAME)"),
    (re.compile(r"\b(alarm|sleep)\(\s*" + ID + r"\s*\)"),
     "alarm/sleep(NAME)"),
    (re.compile(r"tv_sec\s*=\s*" + ID + r"\s*;"), "tv_sec = NAME"),
    (re.compile(r"struct timeval\s+\w+\s*=\s*\{\s*" + ID),
     "timeval {NAME, }"),
]

# Where a file binds a name to a number (or to arithmetic on numbers and
# such names): Python and JS "NAME = 30", sh "NAME=30", C "#define NAME
# 30", "NAME = 30," in an enum, "const int NAME = 30;".
ARITH = re.compile(r"^[\w\s.+\-*/()]+$")
DEFS = {
    "py": [re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*([^=#].*?)\s*(?:#.*)?$")],
    "js": [re.compile(r"^\s*(?:const|let|var)\s+([A-Za-z_]\w*)\s*=\s*"
                      r"([^=;/]+?)\s*;?\s*(?://.*)?$")],
    "sh": [re.compile(r"^\s*(?:readonly\s+|local\s+)?([A-Za-z_]\w*)="
                      r"(" + NUM + r")\s*(?:#.*)?$")],
    "c": [re.compile(r"^\s*#\s*define\s+([A-Z_][A-Z0-9_]*)\s+\(?"
                     r"([^/()]+?)\)?\s*(?:/[/*].*)?$"),
          re.compile(r"\b([A-Z_][A-Z0-9_]*)\s*=\s*([^=;,{}()]+?)\s*[,;}]")],
}
IMPORT = re.compile(r"^\s*(?:from\s+(\w+)\s+import|import\s+([\w, ]+))")
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


RULES = {"py": PY, "sh": SH, "js": JS, "c": C}
NUMBER = re.compile(r"\b\d[\w.]*")
NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def numeric(rhs, known):
    """Whether an assignment's right side is a number, or arithmetic on
    numbers and names in known (no call: scaled(30) is no bare bound)."""
    rhs = rhs.strip()
    if not ARITH.match(rhs) or re.search(r"\w\s*\(", rhs):
        return False            # not arithmetic, or a call
    names = NAME.findall(NUMBER.sub("0", rhs))
    return all(n.split(".")[-1] in known for n in names)


def constants(path, kind):
    """The names path binds to a number (or arithmetic on such names)."""
    defs = []
    with open(path, errors="replace") as f:
        for line in f:
            for rx in DEFS[kind]:
                for m in rx.finditer(line):
                    defs.append((m.group(1), re.sub(r"(?<=\d)[uUlL]+\b", "",
                                                    m.group(2))))
    known = set()
    for _ in range(3):          # names defined from names: a fixpoint
        for name, rhs in defs:
            if numeric(rhs, known):
                known.add(name)
    return known


def imports(path):
    """{module: names taken from it ("*" for all)} of a Python file."""
    got = {}
    with open(path, errors="replace") as f:
        for line in f:
            m = IMPORT.match(line)
            if not m:
                continue
            if m.group(1):
                names = line.split("import", 1)[1].replace("(", " ")
                got.setdefault(m.group(1), set()).update(
                    x.strip().split(" ")[0] for x in names.split(","))
            else:
                for mod in m.group(2).split(","):
                    got.setdefault(mod.strip().split(" ")[0], set())
    return got


def resolver(path, rules, modules):
    """A function telling whether a name (with its qualifier) used in
    path holds a bare number: the file's own names, names imported from
    a module of the tree, and module.NAME of such a module."""
    kind = next(k for k, r in RULES.items() if r is rules)
    own = constants(path, kind)
    if kind == "sh" or path.endswith(".sh"):
        own |= constants(path, "py")    # a here-document's Python
    imp = imports(path) if kind == "py" else {}
    for mod, names in imp.items():
        if mod in modules:
            own |= modules[mod] if "*" in names else (modules[mod] & names)

    def bare(qual, name):
        q = qual.rstrip(".").split(".")[-1] if qual else ""
        if q in modules:
            return name in modules[q]
        return name in own
    return bare


def check(path, rules, modules=None):
    found = []
    bare = resolver(path, rules, modules or {})
    if path.endswith(".sh"):
        rules = rules + PY      # a here-document's Python
    with open(path, errors="replace") as f:
        for no, line in enumerate(f, 1):
            if MARK in line or SCALED.search(line):
                continue
            s = line.strip()
            if s.startswith(("def ", "#", "//")):
                continue        # a default the function scales; a comment
            for rx, what in rules:
                hit = False
                for m in rx.finditer(line):
                    d = m.groupdict()
                    if d.get("name") is None or bare(d["qual"], d["name"]):
                        hit = True
                        break
                if hit:
                    found.append("%s:%d: %s: %s" % (path, no, what, s))
                    break
    return found


def python_modules(todo):
    """{module: names bound to numbers} of the tree's Python files, for
    module.NAME and "from module import NAME"."""
    return {os.path.basename(p)[:-3]: constants(p, "py")
            for p, rules in todo if p.endswith(".py")}


# The lint's own cases: (file name, text, rules, lines it must report,
# the numeric names of the helper modules it imports).
# A rule that stops matching fails here, not silently in the tree.
CASES = [
    ("t.py", "import subprocess\nT_S = 30\nU_S = T_S * 2\nn = 0\n"
     "p.wait(T_S)\nsubprocess.run(a, timeout=U_S)\np.wait(scaled(T_S))\n"
     "wait_for(f, T_S, 'x')\nos.path.join(n, 'a')\n"
     "end = time.monotonic() + T_S\nend = time.monotonic() + T_S * k\n"
     "s.settimeout(self.T_S)\np.wait(5)\nq.join(timeout=T_S)  # not a bound\n",
     PY, [5, 6, 10, 12, 13], {}),
    ("t.py", "import h\nfrom h import T_S\np.wait(h.T_S)\np.wait(T_S)\n"
     "p.wait(h.scaled(h.T_S))\np.wait(h.OTHER)\n", PY, [3, 4], {"h": {"T_S"}}),
    ("t.c", "#define T_S\t5\nenum { N_MS = 100 };\nstatic const int K = 2;\n"
     "alarm(T_S);\npoll(&p, 1, N_MS);\ntv.tv_sec = K;\n"
     "alarm(time_scaled_s(T_S));\npoll(&p, 1, ms());\n", C, [4, 5, 6], {}),
    ("t.sh", "W=30\ntimeout $W cmd\nwhile [ $i -lt $W ]; do :; done\n"
     "timeout \"$(scaled $W)\" cmd\n", SH, [2, 3], {}),
    ("t.js", "const T_MS = 500;\nsetTimeout(r, T_MS);\nf({ timeout: T_MS });\n"
     "setTimeout(r, scaled(T_MS));\n", JS, [2, 3], {}),
]


def selftest(dirpath):
    """TAP results of CASES: (ok, what, detail)."""
    for name, text, rules, want, mods in CASES:
        p = os.path.join(dirpath, name)
        with open(p, "w") as f:
            f.write(text)
        got = [int(x.split(":")[1]) for x in check(p, rules, mods)]
        yield (got == want, "the lint's own case %s finds lines %s" %
               (name, want), "got %s" % got)


def main():
    import tempfile
    todo = list(files())
    modules = python_modules(todo)
    with tempfile.TemporaryDirectory() as tmp:
        own = list(selftest(tmp))
    print("1..%d" % (len(todo) + len(own)))
    failed = 0
    for i, (good, what, detail) in enumerate(own, len(todo) + 1):
        print("%s %d - %s" % ("ok" if good else "not ok", i, what))
        if not good:
            failed += 1
            print("# " + detail)
    for i, (p, rules) in enumerate(todo, 1):
        found = check(p, rules, modules)
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

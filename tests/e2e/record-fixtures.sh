#!/bin/sh
# Records transcripts of the real Claude CLI ($B/cli/claude, started as the
# Agent SDK starts it: stream-json in and out, --verbose,
# --include-partial-messages, no -p) against tests/e2e/mock_api.py, and saves
# exactly what was written to it and what it wrote:
#   OUTDIR/NAME.stdin.jsonl, OUTDIR/NAME.stdout.jsonl, OUTDIR/NAME.meta.json
#   (argv, exit status, stderr, the API requests the mock saw).
# tests/fixtures/README.md describes every scenario.
#
#   sh tests/e2e/record-fixtures.sh [OUTDIR [SCENARIO...]]
#
# Re-runnable; each run overwrites the files of the scenarios it records.
# Named only (not part of the fixtures; they print what FINDINGS.md reports):
# perm_default perm_acceptEdits perm_bypass perm_dontAsk perm_plan
# perm_stdio timing lifecycle, e.g.
#   sh tests/e2e/record-fixtures.sh /tmp/x perm_default lifecycle
# Needs the CLI (make deps) and python3; touches nothing outside a mktemp dir
# and OUTDIR.
set -eu
: "${B:=build}"
export B
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../fixtures}
[ $# -gt 0 ] && shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ ! -x "$B/cli/claude" ]; then
	echo "record-fixtures: $B/cli/claude missing (run make deps)" >&2
	exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hotplex-rec.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

cat >"$tmp/drive.py" <<'EOF'
import json, os, queue, signal, subprocess, sys, threading, time

here, out, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
only = set(sys.argv[4:])
STEP_TIMEOUT = 60          # seconds a step may wait for a line
MOCK_START_TIMEOUT = 10    # seconds for the mock's port file
EXIT_TIMEOUT = 30          # seconds for the CLI to exit after stdin EOF
FLAGS = ["--input-format", "stream-json", "--output-format", "stream-json",
         "--verbose", "--include-partial-messages"]

# The mock: stdin is a pipe, so it exits with us whatever happens.
mock_log = os.path.join(tmp, "mock.log")
port_file = os.path.join(tmp, "port")
mock = subprocess.Popen([sys.executable, os.path.join(here, "mock_api.py"),
                         "--port", "0", "--port-file", port_file,
                         "--log", mock_log, "--stdin-eof-exit"],
                        stdin=subprocess.PIPE)
deadline = time.monotonic() + MOCK_START_TIMEOUT
while not os.path.exists(port_file):
    if mock.poll() is not None or time.monotonic() > deadline:
        sys.exit("record: mock did not start")
    time.sleep(0.05)
port = open(port_file).read().strip()


def cli_env(**extra):
    """The environment cli-env.sh exports, plus extra."""
    env = dict(os.environ, MOCK_PORT=port, CLI_TMP=os.path.join(tmp, "cli"))
    env.update(extra)
    dump = subprocess.run(
        ["sh", "-c", '. "$1" && env -0', "sh",
         os.path.join(here, "cli-env.sh")],
        env=env, check=True, capture_output=True).stdout
    return dict(kv.split("=", 1) for kv in dump.decode().split("\0") if kv)


class Cli:
    def __init__(self, name, cwd, args=(), env=None):
        self.name = name
        self.env = env or cli_env()
        self.argv = ["claude"] + FLAGS + list(args)
        self.stdin_f = open(os.path.join(out, name + ".stdin.jsonl"), "wb")
        self.stdout_f = open(os.path.join(out, name + ".stdout.jsonl"), "wb")
        self.log_start = os.path.getsize(mock_log) \
            if os.path.exists(mock_log) else 0
        self.p = subprocess.Popen([self.env["CLAUDE_CLI"]] + self.argv[1:],
                                  cwd=cwd, env=self.env,
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()
        self.err = b""
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for raw in self.p.stdout:
            self.lines.put(raw)
        self.lines.put(None)

    def _read_err(self):
        self.err = self.p.stderr.read()

    def send(self, obj):
        line = json.dumps(obj, ensure_ascii=False,
                          separators=(",", ":")).encode() + b"\n"
        self.stdin_f.write(line)
        self.stdin_f.flush()
        self.p.stdin.write(line)
        self.p.stdin.flush()

    def user(self, content):
        self.send({"type": "user",
                   "message": {"role": "user", "content": content}})

    def until(self, pred, what):
        """Reads (and records) lines up to the first one pred accepts."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            try:
                raw = self.lines.get(timeout=max(0.0,
                                                 deadline - time.monotonic()))
            except queue.Empty:
                sys.exit("record %s: timeout waiting for %s" %
                         (self.name, what))
            if raw is None:
                sys.exit("record %s: CLI exited waiting for %s; stderr: %s" %
                         (self.name, what, self.err.decode()[-2000:]))
            self.stdout_f.write(raw)
            self.stdout_f.flush()
            obj = json.loads(raw)
            self.seen.append(obj)
            if pred(obj):
                return obj

    def result(self):
        return self.until(lambda o: o.get("type") == "result", "result")

    def finish(self, note=""):
        """Closes stdin, records the rest of stdout, waits for the exit."""
        self.p.stdin.close()
        self.stdin_f.close()
        while True:
            raw = self.lines.get(timeout=EXIT_TIMEOUT)
            if raw is None:
                break
            self.stdout_f.write(raw)
            self.seen.append(json.loads(raw))
        self.stdout_f.close()
        rc = self.p.wait(timeout=EXIT_TIMEOUT)
        time.sleep(0.1)   # let the stderr reader see EOF
        with open(mock_log, "rb") as f:
            f.seek(self.log_start)
            mock_lines = [json.loads(x) for x in f if x.strip()]
        meta = {"argv": self.argv, "exit_status": rc,
                "stderr": self.err.decode(errors="replace"),
                "mock_requests": mock_lines, "note": note}
        with open(os.path.join(out, self.name + ".meta.json"), "w") as f:
            json.dump(meta, f, indent=1, ensure_ascii=False)
            f.write("\n")
        print("recorded %s: %d stdout lines, exit %d, %d API requests" %
              (self.name, sum(1 for _ in open(os.path.join(
                  out, self.name + ".stdout.jsonl"))), rc, len(mock_lines)))
        return rc


def workdir(name, files=()):
    d = os.path.join(tmp, "w", name)
    os.makedirs(d)
    for f in files:
        open(os.path.join(d, f), "w").close()
    return d


EXPERIMENTS = {"timing", "lifecycle"}


def want(name):
    return (not only and not name.startswith("perm_") and
            name not in EXPERIMENTS) or name in only


def is_event(o, etype):
    return o.get("type") == "stream_event" and \
        o.get("event", {}).get("type") == etype


session_a = None
cwd_a = workdir("two_turns", ["alpha.txt", "beta.c"])

if want("two_turns") or want("resume"):
    c = Cli("two_turns", cwd_a)
    c.user("[[think]] [[bash:ls]] list the files here")
    session_a = c.result()["session_id"]
    c.user("Say hello.")
    c.result()
    c.finish()

if want("resume"):
    c = Cli("resume", cwd_a, ["--resume", session_a])
    c.user("[[echo]] what did I say before?")
    c.result()
    c.finish()

if want("interrupt"):
    c = Cli("interrupt", workdir("interrupt"))
    c.user("[[stall]] never finish")
    c.until(lambda o: is_event(o, "content_block_start"), "the stream")
    c.send({"type": "control_request", "request_id": "int-1",
            "request": {"subtype": "interrupt"}})
    c.result()
    c.user("after the interrupt")
    c.result()
    c.finish()

if want("api_error"):
    c = Cli("api_error", workdir("api_error"),
            env=cli_env(CLAUDE_CODE_MAX_RETRIES="0"))
    c.user("[[error:500]] fail please")
    c.result()
    c.finish()

if want("api_retry"):
    c = Cli("api_retry", workdir("api_retry"),
            env=cli_env(CLAUDE_CODE_MAX_RETRIES="2"))
    c.user("[[error:529:1]] overloaded once")
    c.result()
    c.finish()

if want("broken_stream"):
    c = Cli("broken_stream", workdir("broken_stream"))
    c.user("[[break]] cut me off")
    c.result()
    c.finish()

if want("can_use_tool"):
    d = workdir("can_use_tool")
    c = Cli("can_use_tool", d, ["--permission-prompt-tool", "stdio"])
    for cmd, allow in (("touch allowed.txt", True),
                       ("touch denied.txt", False)):
        c.user("[[bash:%s]] please" % cmd)
        req = c.until(lambda o: o.get("type") == "control_request" and
                      o["request"].get("subtype") == "can_use_tool",
                      "can_use_tool")
        if allow:
            ans = {"behavior": "allow",
                   "updatedInput": req["request"]["input"]}
        else:
            ans = {"behavior": "deny",
                   "message": "Denied by supervisor policy"}
        c.send({"type": "control_response",
                "response": {"subtype": "success",
                             "request_id": req["request_id"],
                             "response": ans}})
        c.result()
    c.finish(note="files after the run: %s" % sorted(os.listdir(d)))

if want("background_turn"):
    # A Bash task in the background outlives its turn; when it ends, the
    # CLI starts a turn of its own, with no input from us: system/init,
    # the model's answer to the notification, and a result with "origin".
    c = Cli("background_turn", workdir("background_turn"),
            ["--allowedTools=Bash"])
    c.user('[[tool:Bash:{"command":"sleep 1; echo bg-finished",'
           '"description":"bg","run_in_background":true}]] in background')
    c.result()
    c.until(lambda o: o.get("type") == "system" and
            o.get("subtype") == "task_notification", "the task's end")
    own = c.result()
    c.finish(note="the CLI's own turn ended with origin %s" %
             json.dumps(own.get("origin")))

if want("slash"):
    c = Cli("slash", workdir("slash"))
    c.user("/cost")
    c.result()
    c.user(" /cost")            # escape: a leading space, sent to the model
    c.result()
    c.user([{"type": "text", "text": "/cost"}])   # block array: still local
    c.result()
    c.finish()

if want("initialize"):
    c = Cli("initialize", workdir("initialize"))
    # As the Agent SDK does: initialize and the first prompt back to back.
    c.send({"type": "control_request", "request_id": "init-1",
            "request": {"subtype": "initialize"}})
    c.user("hello")
    c.result()
    c.send({"type": "control_request", "request_id": "int-idle",
            "request": {"subtype": "interrupt"}})
    c.until(lambda o: o.get("type") == "control_response",
            "interrupt answer")
    c.finish()

# -- Experiments behind tests/e2e/FINDINGS.md: run only when named. --------

def until_opt(c, pred, timeout):
    """Like Cli.until, but None on timeout and "EXIT" on stdout EOF."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            raw = c.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if raw is None:
            return "EXIT"
        c.stdout_f.write(raw)
        c.stdout_f.flush()
        o = json.loads(raw)
        c.seen.append(o)
        if pred(o):
            return o


def is_tool_use(o):
    return o.get("type") == "assistant" and \
        o["message"]["content"][0]["type"] == "tool_use"


def shell(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True,
                          text=True).stdout.strip()


PERM_MODES = {"perm_default": (["--permission-mode", "default"], {}),
              "perm_acceptEdits": (["--permission-mode", "acceptEdits"], {}),
              "perm_bypass": (["--permission-mode", "bypassPermissions"],
                              {"IS_SANDBOX": "1"}),
              "perm_dontAsk": (["--permission-mode", "dontAsk"], {}),
              "perm_plan": (["--permission-mode", "plan"], {}),
              "perm_stdio": (["--permission-mode", "default",
                              "--permission-prompt-tool", "stdio"], {})}
for name, (args, extra_env) in PERM_MODES.items():
    if name not in only:
        continue
    d = workdir(name)
    c = Cli(name, d, args, env=cli_env(**extra_env))
    for cmd in ("touch x", "ls"):
        c.user("[[bash:%s]] go" % cmd)
        asked = []
        while True:
            o = until_opt(c, lambda o: o.get("type") in
                          ("result", "control_request"), 15)
            if o in (None, "EXIT"):
                print("%s %s: %s" % (name, cmd, "no result in 15 s"
                                     if o is None else "CLI exited"))
                break
            if o["type"] == "control_request":
                asked.append(o["request"].get("subtype"))
                c.send({"type": "control_response", "response": {
                    "subtype": "success", "request_id": o["request_id"],
                    "response": {"behavior": "allow",
                                 "updatedInput": o["request"]["input"]}}})
                continue
            tr = [b for x in c.seen if x.get("type") == "user"
                  for b in x["message"]["content"]
                  if isinstance(b, dict) and b.get("type") == "tool_result"]
            print("%s %-7s asked=%s tool_result=%r denials=%d x_exists=%s" %
                  (name, cmd, asked, str(tr[-1].get("content"))[:70],
                   len(o["permission_denials"]),
                   os.path.exists(os.path.join(d, "x"))))
            break
    c.finish()

if "timing" in only:
    N = 20
    for rep in range(3):
        for label, args in (("no -p", []), ("-p", ["-p"])):
            t0 = time.monotonic()
            c = Cli("timing", workdir("timing%d%s" % (rep, args and "p")),
                    args)
            c.user("hello")
            c.result()
            cold = time.monotonic() - t0
            warm = []
            for i in range(N):
                t = time.monotonic()
                c.user("turn %d" % i)
                c.result()
                warm.append(time.monotonic() - t)
            c.finish()
            warm.sort()
            print("timing %-5s cold %4.0f ms, warm median %4.1f ms "
                  "(min %.1f max %.1f)" % (label, cold * 1e3,
                                           warm[N // 2] * 1e3,
                                           warm[0] * 1e3, warm[-1] * 1e3))

if "lifecycle" in only:
    c = Cli("lifecycle_idle", workdir("lifecycle_idle"))
    t = time.monotonic()
    c.send({"type": "control_request", "request_id": "i1",
            "request": {"subtype": "initialize"}})
    o = until_opt(c, lambda o: o.get("type") == "control_response", 15)
    print("initialize alone: %s after %.0f ms" % (
        o and o["response"]["subtype"], (time.monotonic() - t) * 1e3))
    c.send({"type": "control_request", "request_id": "i2",
            "request": {"subtype": "interrupt"}})
    print("idle interrupt:", json.dumps(until_opt(
        c, lambda o: o.get("type") == "control_response", 15)),
        "then within 2 s:", until_opt(c, lambda o: True, 2))
    c.finish()

    c = Cli("lifecycle_eof", workdir("lifecycle_eof"))
    c.user("[[slow:300]] " + "many deltas please " * 4)
    until_opt(c, lambda o: is_event(o, "content_block_delta"), 15)
    t = time.monotonic()
    rc = c.finish()
    r = [o for o in c.seen if o["type"] == "result"]
    print("EOF mid-stream: exit %d after %.0f ms, result %s" % (
        rc, (time.monotonic() - t) * 1e3, r and r[-1]["subtype"]))

    for how in ("eof", "interrupt", "sigterm"):
        d = workdir("lifecycle_tool_" + how)
        c = Cli("lifecycle_tool_" + how, d,
                ["--permission-mode", "acceptEdits"])
        c.user("[[bash:sleep 4 && touch late]] go")
        until_opt(c, is_tool_use, 15)
        time.sleep(1)      # let the tool start: we inspect processes
        tree = shell("ps -e -o pid,ppid,pgid,sid,comm,args | "
                     "grep -E '^ *PID|[s]leep 4'")
        t = time.monotonic()
        if how == "interrupt":
            c.send({"type": "control_request", "request_id": "x",
                    "request": {"subtype": "interrupt"}})
            r = c.result()
            rc = c.finish()
        elif how == "sigterm":
            c.p.send_signal(signal.SIGTERM)
            rc = c.finish()
        else:
            rc = c.finish()
        dt = time.monotonic() - t
        left = shell("ps -e -o pid,args | grep '[s]leep 4' | "
                     "awk '{print $1}'")
        time.sleep(4)
        print("Bash running, %s: exit %d after %.1f s; tool processes "
              "left: %s; 'late' created: %s\n  CLI pid %d, tree: %s" % (
                  how, rc, dt, left.split() or "none",
                  os.path.exists(os.path.join(d, "late")), c.p.pid,
                  tree.replace("\n", "\n    ")))

    for sig in (signal.SIGTERM, signal.SIGINT):
        c = Cli("lifecycle_sig%d" % sig, workdir("lifecycle_sig%d" % sig))
        c.user("[[stall]] hold")
        until_opt(c, lambda o: is_event(o, "content_block_start"), 15)
        n = len(c.seen)
        c.p.send_signal(sig)
        rc = c.finish()
        print("signal %d mid-stream: exit %d, lines after: %s" % (
            sig, rc, [o["type"] + "/" + o.get("subtype", "")
                      for o in c.seen[n:] if o["type"] != "stream_event"]))

mock.stdin.close()
mock.wait(timeout=EXIT_TIMEOUT)
EOF

python3 "$tmp/drive.py" "$here" "$out" "$tmp" "$@"

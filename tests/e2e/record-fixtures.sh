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
import json, os, queue, subprocess, sys, threading, time

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


def want(name):
    return not only or name in only


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

mock.stdin.close()
mock.wait(timeout=EXIT_TIMEOUT)
EOF

python3 "$tmp/drive.py" "$here" "$out" "$tmp" "$@"

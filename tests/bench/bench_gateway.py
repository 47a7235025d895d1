#!/usr/bin/env python3
"""What the model-API gateway adds to one streamed request: the same SSE
request to the mock Messages API directly and through the gateway,
alternating, over keep-alive connections as the CLI makes them; time to
the first event and to the end.  Reports; never fails on a slow machine."""

import http.client
import json
import os
import statistics
import sys
import tempfile
import time
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
from hplib import Daemon  # noqa: E402
from test_e2e import Mock  # noqa: E402

N = int(os.environ.get("BENCH_GW_REQUESTS", "200"))
BODY = json.dumps({"model": "claude-opus-4-8", "max_tokens": 1024,
                   "stream": True, "messages": [
                       {"role": "user", "content": "Say hi."}]})


def request(h, token):
    t0 = time.perf_counter()
    h.request("POST", "/v1/messages?beta=true", body=BODY, headers={
        "content-type": "application/json", "x-api-key": token,
        "anthropic-version": "2023-06-01"})
    r = h.getresponse()
    first = None
    while True:
        b = r.read1(65536)
        if first is None:
            first = time.perf_counter() - t0
        if not b:
            break
    if r.status != 200:
        raise RuntimeError("status %d" % r.status)
    return first, time.perf_counter() - t0


def cli_env(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return dict(kv.split(b"=", 1) for kv in f.read().split(b"\0")
                    if b"=" in kv)


def ms(xs):
    return "%8.3f" % (statistics.median(xs) * 1000)


def main():
    tmp = tempfile.mkdtemp(prefix="hpbenchgw.")
    mock = Mock(tmp)
    try:
        with Daemon({"api_upstream": "http://127.0.0.1:%d" % mock.port},
                    env={"ANTHROPIC_API_KEY": "bench-key"}) as d:
            c = d.client()
            wd = os.path.join(d.work, "b")
            os.makedirs(wd)
            c.request("open", session="b", workdir=wd)
            s = [x for x in c.request("sessions")["data"]
                 if x["session"] == "b"][0]
            env = cli_env(s["cli_pid"])
            gport = int(env[b"ANTHROPIC_BASE_URL"].rsplit(b":", 1)[1])
            token = env[b"ANTHROPIC_API_KEY"].decode()
            direct = http.client.HTTPConnection("127.0.0.1", mock.port)
            gw = http.client.HTTPConnection("127.0.0.1", gport)
            request(direct, "bench-key")        # warm both
            request(gw, token)
            df, dt, gf, gt = [], [], [], []
            for i in range(N):                  # alternate: same conditions
                a, b = request(direct, "bench-key")
                df.append(a)
                dt.append(b)
                a, b = request(gw, token)
                gf.append(a)
                gt.append(b)
    finally:
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("| %-40s | %8s | %8s | %4s |" % ("one streamed request (ms)",
                                           "direct", "gateway", "n"))
    print("|%s|%s|%s|%s|" % ("-" * 42, "-" * 10, "-" * 10, "-" * 6))
    print("| %-40s | %s | %s | %4d |" % ("first event, median", ms(df),
                                         ms(gf), N))
    print("| %-40s | %s | %s | %4d |" % ("whole stream, median", ms(dt),
                                         ms(gt), N))
    print()
    print("gateway adds %+.3f ms to the first event and %+.3f ms to a whole "
          "streamed request (median; target < 1 ms per warm turn)" %
          ((statistics.median(gf) - statistics.median(df)) * 1000,
           (statistics.median(gt) - statistics.median(dt)) * 1000))


if __name__ == "__main__":
    main()

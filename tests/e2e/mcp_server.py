#!/usr/bin/env python3
"""A tiny stdio MCP server for the per-session MCP test: newline-delimited
JSON-RPC 2.0 on stdin/stdout.  One tool, "whoami", answers with the uid it
runs as, its working directory and whether it could write outside the
session (the path given as its first argument)."""

import json
import os
import sys


def whoami(probe):
    try:
        with open(probe, "w") as f:
            f.write("x")
        wrote = "yes"
    except OSError as e:
        wrote = "no(%s)" % (e.strerror or e.errno)
    return "mcp-uid=%d cwd=%s wrote-outside=%s" % (os.getuid(), os.getcwd(),
                                                  wrote)


def main():
    probe = sys.argv[1] if len(sys.argv) > 1 else "/nonexistent/x"
    for line in sys.stdin:
        try:
            req = json.loads(line)
        except ValueError:
            continue
        if "id" not in req:
            continue            # a notification
        m = req.get("method")
        if m == "initialize":
            res = {"protocolVersion": req.get("params", {}).get(
                       "protocolVersion", "2024-11-05"),
                   "capabilities": {"tools": {}},
                   "serverInfo": {"name": "hp-test", "version": "1"}}
        elif m == "tools/list":
            res = {"tools": [{"name": "whoami",
                              "description": "who runs this server",
                              "inputSchema": {"type": "object",
                                              "properties": {}}}]}
        elif m == "tools/call":
            res = {"content": [{"type": "text", "text": whoami(probe)}]}
        else:
            out = {"jsonrpc": "2.0", "id": req["id"],
                   "error": {"code": -32601, "message": "no " + str(m)}}
            sys.stdout.write(json.dumps(out) + "\n")
            sys.stdout.flush()
            continue
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": req["id"],
                                     "result": res}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""agent/'s rooms (agent/CMakeLists.txt): a file of a room includes headers of its own room and
of the rooms below it only; kabi/ and probes/ include nothing of agent/; no source sits in agent/
outside a room. Usage: rooms.py AGENT_DIR. Prints each wrong include as FILE:LINE and exits 1."""
import os
import re
import sys

ROOMS = ["base", "facts", "decision", "report", "build", "load", "cli"]  # bottom up
INCLUDE = re.compile(r'^\s*#\s*include\s+"agent/([^"/]+)(/[^"]*)?"')


def wrong_includes(path, allowed):
    out = []
    with open(path, errors="replace") as f:
        for n, line in enumerate(f, 1):
            m = INCLUDE.match(line)
            if m and m.group(1) not in allowed:
                out.append("%s:%d: includes agent/%s%s (%s)" % (
                    path, n, m.group(1), m.group(2) or "",
                    "a room above this one" if m.group(1) in ROOMS else "not a room of agent/"))
    return out


def sources(top):
    for d, _, files in os.walk(top):
        for f in sorted(files):
            if f.endswith((".h", ".cpp", ".c")):
                yield d, os.path.join(d, f)


def main():
    agent = os.path.abspath(sys.argv[1])
    project = os.path.dirname(agent)
    problems = []
    for d, path in sources(agent):
        rel = os.path.relpath(d, agent)
        room = rel.split(os.sep)[0]
        if rel == "." or room not in ROOMS:
            problems.append("%s: outside every room of agent/ (%s)" % (path, ", ".join(ROOMS)))
            continue
        problems += wrong_includes(path, set(ROOMS[:ROOMS.index(room) + 1]))
    for lib in ("kabi", "probes"):
        for _, path in sources(os.path.join(project, lib)):
            problems += wrong_includes(path, set())
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

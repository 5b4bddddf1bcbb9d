#!/usr/bin/env python3
"""The mutation list (tests/mutation/mutations.txt) and the scratch copy, for run.sh.

  mutate.py check LIST SRC          every mutation well formed, its search text exactly once in
                                    SRC/<file>; prints "NAME<TAB>FILE" per mutation
  mutate.py apply LIST NAME SRC     writes SRC/<file> with NAME's mistake in it
  mutate.py rule LIST NAME          prints NAME's rule
  mutate.py first LIST NAME         prints NAME's first test (a command line; empty when none given)
  mutate.py sync REPO DEST          DEST becomes a copy of REPO's files (tracked and untracked,
                                    not ignored): only files whose bytes differ are written, so
                                    that an incremental build of DEST rebuilds what changed
Exit: 0 ok, 2 an error (named: the list's line, or the file and how often the text occurs).
"""
import os
import shutil
import subprocess
import sys

KEYS = ("name", "rule", "file", "search", "replace")
OPTIONAL = ("first",)


class ListError(Exception):
    pass


def unescape(s, where):
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\":
            if i + 1 < len(s) and s[i + 1] in "n\\":
                out.append("\n" if s[i + 1] == "n" else "\\")
                i += 2
                continue
            raise ListError("%s: a backslash must be \\n or \\\\" % where)
        out.append(s[i])
        i += 1
    return "".join(out)


def parse(path):
    mutations, cur, start = [], {}, 0
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for n, line in enumerate(lines + [""], 1):
        where = "%s:%d" % (path, n)
        if line.startswith("#"):
            continue
        if not line.strip():
            if cur:
                missing = [k for k in KEYS if k not in cur]
                if missing:
                    raise ListError("%s:%d: mutation without %s" % (path, start, ", ".join(missing)))
                mutations.append(cur)
                cur = {}
            continue
        key, sep, value = line.partition(": ")
        if not sep or key not in KEYS + OPTIONAL:
            raise ListError("%s: expected 'KEY: VALUE' with KEY one of %s" % (where, ", ".join(KEYS + OPTIONAL)))
        if key in cur:
            raise ListError("%s: %s given twice" % (where, key))
        if not cur:
            start = n
        cur[key] = unescape(value, where) if key in ("search", "replace") else value
    if not mutations:
        raise ListError("%s: no mutation" % path)
    names = [m["name"] for m in mutations]
    for m in mutations:
        if names.count(m["name"]) > 1:
            raise ListError("%s: mutation %s named twice" % (path, m["name"]))
        if m["search"] == m["replace"]:
            raise ListError("%s: mutation %s replaces its text with itself" % (path, m["name"]))
    return mutations


def located(m, src):
    path = os.path.join(src, m["file"])
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ListError("mutation %s: %s: %s" % (m["name"], m["file"], e.strerror))
    count = text.count(m["search"])
    if count != 1:
        raise ListError("mutation %s: its search text occurs %d times in %s (must be exactly once): %r"
                        % (m["name"], count, m["file"], m["search"]))
    return path, text


def find(mutations, name):
    for m in mutations:
        if m["name"] == name:
            return m
    raise ListError("no mutation %s" % name)


def sync(repo, dest):
    files = subprocess.run(["git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           check=True, stdout=subprocess.PIPE).stdout.decode().split("\0")
    wanted = set()
    for rel in filter(None, files):
        s = os.path.join(repo, rel)
        if not os.path.islink(s) and not os.path.isfile(s):
            continue  # deleted in the work tree, not yet in the index
        wanted.add(rel)
        d = os.path.join(dest, rel)
        if os.path.islink(s):  # kept as a link, whatever it points to (fixtures link into /sys)
            target = os.readlink(s)
            if os.path.islink(d) and os.readlink(d) == target:
                continue
            if os.path.lexists(d):
                os.remove(d)
            os.makedirs(os.path.dirname(d), exist_ok=True)
            os.symlink(target, d)
            continue
        with open(s, "rb") as f:
            data = f.read()
        try:
            with open(d, "rb") as f:
                if f.read() == data and not os.path.islink(d):
                    if (os.stat(d).st_mode & 0o111) == (os.stat(s).st_mode & 0o111):
                        continue
        except OSError:
            pass
        os.makedirs(os.path.dirname(d), exist_ok=True)
        if os.path.lexists(d):
            os.remove(d)
        with open(d, "wb") as f:
            f.write(data)
        shutil.copymode(s, d)
    for root, dirs, names in os.walk(dest):
        if root == dest and "build" in dirs:
            dirs.remove("build")  # the copy's own build directory (run.sh)
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), dest)
            if rel not in wanted:
                os.remove(os.path.join(root, name))


def main(argv):
    try:
        if len(argv) == 3 and argv[0] == "check":
            for m in parse(argv[1]):
                located(m, argv[2])
                print("%s\t%s" % (m["name"], m["file"]))
        elif len(argv) == 4 and argv[0] == "apply":
            m = find(parse(argv[1]), argv[2])
            path, text = located(m, argv[3])
            with open(path, "w", encoding="utf-8") as f:
                f.write(text.replace(m["search"], m["replace"], 1))
        elif len(argv) == 3 and argv[0] == "rule":
            print(find(parse(argv[1]), argv[2])["rule"])
        elif len(argv) == 3 and argv[0] == "first":
            print(find(parse(argv[1]), argv[2]).get("first", ""))
        elif len(argv) == 3 and argv[0] == "sync":
            sync(argv[1], argv[2])
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (ListError, OSError, subprocess.CalledProcessError) as e:
        print("mutate: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

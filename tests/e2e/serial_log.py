"""A VM test's serial console read as records, and its PASS/FAIL tally (the VM checkers' one parser).

The VM's scripts (tests/e2e/vm/) print one record a line, "KIND TAG TEXT", between
"<MARKER> BEGIN ..." and "<MARKER> END". Other output shares the serial line with them:
SeaBIOS's "Booting from ROM.." (no newline) and the console's escape codes before BEGIN, and a
kernel console message ("[   30.123456] ...") whenever the kernel prints one. So BEGIN is found
anywhere in a line; a record is read from where its keyword starts, at the line's start or right
behind a kernel message that has no newline yet; and a record that a kernel message cut in two (the kernel
writes to the UART between two chunks of the script's line) is joined again with its rest, the
next line. Kernel messages of their own are not records.
"""
import json
import re

ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|[c78])")
KERNEL = re.compile(r"\[\s*\d+\.\d{6}\] ")  # a kernel console message's timestamp
TIMES = re.compile(r"\bt0=([\d.]+) t=([\d.]+)")


class SerialLog:
    """The records of PATH's run of MARKER (e.g. "BVM"), of the KINDS given.

    kernel_kinds: kinds whose text is itself kernel messages (dmesg's): never taken as cut.
    """

    def __init__(self, path, marker, kinds, kernel_kinds=("DMESG",)):
        self.path, self.marker = path, marker
        self.begin = None  # the words after "<MARKER> BEGIN"
        self.end = None  # the words after "<MARKER> END"
        self.lines = []  # every line, the escape codes and carriage returns gone
        self.records = []  # (kind, text after "KIND ")
        self.kernel_kinds = set(kernel_kinds)
        words = sorted(set(kinds) | {marker}, key=len, reverse=True)
        self._record = re.compile(r"(%s) " % "|".join(map(re.escape, words)))
        with open(path, errors="replace") as f:
            self.lines = [ANSI.sub("", l).replace("\r", "") for l in f.read().split("\n")]
        self._read(self.lines)

    def _find(self, line):
        """The record in LINE: (kind, text), or None."""
        m = self._record.match(line)
        k = KERNEL.match(line.lstrip()) if not m else None
        if k:  # a kernel message without its newline yet, maybe with a record right behind it
            start = len(line) - len(line.lstrip()) + k.end()
            for c in self._record.finditer(line, start):
                if c.start() == start or not line[c.start() - 1].isspace():
                    m = c  # "...string tableFACT b ...", not the kernel's own "input: AT Translated"
                    break
        return (m.group(1), line[m.end():]) if m else None

    def _read(self, lines):
        begin = "%s BEGIN" % self.marker
        i = 0
        while i < len(lines):
            line = lines[i]
            i += 1
            if self.begin is None:
                if begin in line:
                    self.begin = line[line.index(begin) + len(begin):].split()
                continue
            rec = self._find(line)
            if rec is None:
                continue
            kind, text = rec
            k = KERNEL.search(text) if kind not in self.kernel_kinds else None
            if k and i < len(lines) and lines[i] and not self._record.match(lines[i]) \
                    and not lines[i].lstrip().startswith("["):
                text = text[:k.start()] + lines[i]  # cut by a kernel message: the rest is the next line
                i += 1
            if kind == self.marker:
                if text.startswith("END") and self.end is None:
                    self.end = text[3:].split()
                continue
            self.records.append((kind, text))

    def problem(self):
        """Why the run is not whole (no BEGIN, no END), or None."""
        if self.begin is None:
            return "%s: no '%s BEGIN': the VM never reached the test's script" % (self.path, self.marker)
        if self.end is None:
            last = "%s %s" % self.records[-1] if self.records else "none"
            return "%s: no '%s END' after %d records: the VM stopped early (its last record: %s)" % (
                self.path, self.marker, len(self.records), last[:300])
        return None

    @property
    def ended(self):
        return self.end is not None

    def texts(self, kind):
        """The texts of KIND's records, in order."""
        return [t for k, t in self.records if k == kind]

    def tagged(self, kind, tag):
        """The texts after "KIND TAG " (or "KIND TAG" alone: "")."""
        out = []
        for t in self.texts(kind):
            word, _, rest = t.partition(" ")
            if word == tag:
                out.append(rest)
        return out

    def by_tag(self, kind):
        """{tag: [text, ...]} of KIND's records."""
        out = {}
        for t in self.texts(kind):
            word, _, rest = t.partition(" ")
            out.setdefault(word, []).append(rest)
        return out

    def last(self, kind, tag, default=None):
        got = self.tagged(kind, tag)
        return got[-1] if got else default

    def kv(self, kind, tag):
        """The key=value words of KIND TAG's records, merged (a later record's key wins)."""
        d = {}
        for t in self.tagged(kind, tag):
            for w in t.split():
                k, _, v = w.partition("=")
                d[k] = v
        return d

    def json(self, kind, tag):
        """KIND TAG's last record as JSON: None when none or "-", {"_error", "_text"} when unreadable."""
        return parse_json(self.last(kind, tag))

    def exit(self, tag):
        """An "EXIT TAG <status> [t0= t=]" record: (status, seconds); status an int, or a word
        ("hung"); (None, None) when there is none."""
        t = self.last("EXIT", tag)
        if t is None:
            return None, None
        word = t.split()[0] if t.split() else ""
        return (int(word) if word.isdigit() else word), span(t)


def parse_json(text):
    if text is None or text.strip() in ("-", ""):
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        return {"_error": "bad JSON: %s" % e, "_text": text[:2000]}


def span(text):
    """t - t0 of a record's "t0=.. t=.." words, None without them."""
    m = TIMES.search(text or "")
    return float(m.group(2)) - float(m.group(1)) if m else None


class Checks:
    """PASS/FAIL lines and "N passed, M failed". echo: each line printed as it is made, else by
    summary(), after what the checker prints for the failed scenarios."""

    def __init__(self, echo=False):
        self.echo = echo
        self.results = []  # (ok, scenario, line)

    def add(self, ok, what, scenario=None, detail=""):
        line = "%s %s%s" % ("PASS" if ok else "FAIL", what, ": " + detail if detail and not ok else "")
        self.results.append((bool(ok), scenario, line))
        if self.echo:
            print(line)
        return bool(ok)

    def failed(self):
        return [sc for ok, sc, _ in self.results if not ok]

    def failed_scenarios(self):
        return list(dict.fromkeys(self.failed()))

    def summary(self):
        """Prints the tally (and the lines, unless echoed); the exit status: 0 all passed, 1 not."""
        if not self.echo:
            for _, _, line in self.results:
                print(line)
        passed = sum(1 for ok, _, _ in self.results if ok)
        print("%d passed, %d failed" % (passed, len(self.results) - passed))
        return 0 if passed == len(self.results) else 1

    def whole(self, log):
        """A failing check when LOG's run is not whole: clear about what is missing."""
        p = log.problem()
        return self.add(p is None, "the VM ran from %s BEGIN to %s END" % (log.marker, log.marker), "vm", p or "")



def show_scenario(name, snap_tags, log_tags, dmesg_tags, snaps, logs, dmesg, tail=80):
    """What the VM saw in a failed scenario: status.json at SNAP_TAGS, the agent's log at
    LOG_TAGS, the kernel's messages at DMESG_TAGS (each at most its last TAIL lines)."""
    print("\n=== %s: what the VM saw ===" % name)
    for t in snap_tags:
        s = snaps.get(t)
        print("--- status.json at %s ---" % t)
        print(json.dumps(s, indent=1) if s is not None else "  (none)")
    for t in log_tags:
        print("--- agent log (%s) ---" % t)
        for l in logs.get(t, ["(empty)"])[-tail:]:
            print("  " + l)
    for t in dmesg_tags:
        if dmesg.get(t):
            print("--- kernel messages (%s) ---" % t)
            for l in dmesg[t][-tail:]:
                print("  " + l)

#!/usr/bin/env python3
"""serial_log.py on serial consoles as the VMs write them (python3 test_serial_log.py)."""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serial_log  # noqa: E402

KINDS = ("FACT", "SNAP", "EXIT", "LOG", "DMESG", "AT", "RC")


def log_of(text, **kw):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
    try:
        return serial_log.SerialLog(f.name, "XVM", KINDS, **kw)
    finally:
        os.unlink(f.name)


class SerialLogTest(unittest.TestCase):
    def test_begin_after_firmware_text_and_escapes(self):
        log = log_of("SeaBIOS\r\n\x1b[2J\x1bcBooting from ROM..XVM BEGIN 6.1.0-56-amd64 uptime=3.1\r\n"
                     "FACT boot id=1\nXVM END\n")
        self.assertEqual(log.begin, ["6.1.0-56-amd64", "uptime=3.1"])
        self.assertEqual(log.kv("FACT", "boot"), {"id": "1"})
        self.assertIsNone(log.problem())

    def test_nothing_before_begin_is_a_record(self):
        log = log_of("FACT early x=1\nXVM BEGIN k\nFACT late x=2\nXVM END\n")
        self.assertEqual(log.by_tag("FACT"), {"late": ["x=2"]})

    def test_kernel_line_between_and_in_front_of_records(self):
        log = log_of("XVM BEGIN k\n"
                     "FACT a ready=1\n"
                     "[   30.123456] agent_test_nic: loading out-of-tree module taints kernel.\n"
                     "[   31.000001] symbol name out of bounds in string tableFACT b ready=0 driver=-\n"
                     "[   32.500000] input: AT Translated Set 2 keyboard\n"
                     "XVM END\n")
        self.assertEqual(log.kv("FACT", "a"), {"ready": "1"})
        self.assertEqual(log.kv("FACT", "b"), {"ready": "0", "driver": "-"})
        # a kernel message of its own is no record, even with a keyword in it
        self.assertEqual(log.texts("AT"), [])
        self.assertEqual(len(log.records), 2)

    def test_record_cut_by_a_kernel_message_is_joined(self):
        log = log_of("XVM BEGIN k\n"
                     "FACT a ready=1 dri[   30.123456] agent_test_nic 0000:00:03.0: probe\n"
                     "ver=agent_test_nic nic=1\n"
                     "SNAP a {\"phase\": \"re[   31.000000] e1000: link up\n"
                     "ady\"}\n"
                     "XVM END\n")
        self.assertEqual(log.kv("FACT", "a"), {"ready": "1", "driver": "agent_test_nic", "nic": "1"})
        self.assertEqual(log.json("SNAP", "a"), {"phase": "ready"})

    def test_dmesg_records_keep_their_timestamps(self):
        log = log_of("XVM BEGIN k\nDMESG first [   12.345678] agent_test_nic: firmware: 57 bytes\n"
                     "FACT first x=1\nXVM END\n")
        self.assertEqual(log.tagged("DMESG", "first"), ["[   12.345678] agent_test_nic: firmware: 57 bytes"])
        self.assertEqual(log.kv("FACT", "first"), {"x": "1"})

    def test_missing_end_is_a_clear_failure(self):
        log = log_of("XVM BEGIN k\nFACT a x=1\nSNAP a {\"phase\": \"building\"}\n")
        p = log.problem()
        self.assertIn("no 'XVM END'", p)
        self.assertIn("stopped early", p)
        self.assertIn('SNAP a {"phase": "building"}', p)
        checks = serial_log.Checks()
        self.assertFalse(checks.whole(log))
        self.assertEqual(checks.failed(), ["vm"])

    def test_missing_begin_is_a_clear_failure(self):
        log = log_of("Kernel panic - not syncing: VFS: Unable to mount root fs\n")
        self.assertIsNone(log.begin)
        self.assertIn("no 'XVM BEGIN'", log.problem())
        self.assertEqual(log.records, [])

    def test_exit_json_and_times(self):
        log = log_of("XVM BEGIN k\nEXIT a 0 t0=10.50 t=12.00\nEXIT b hung t0=1.00 t=61.00\nEXIT c 2\n"
                     "SNAP a -\nSNAP b {broken\nXVM END\n")
        self.assertEqual(log.exit("a"), (0, 1.5))
        self.assertEqual(log.exit("b"), ("hung", 60.0))
        self.assertEqual(log.exit("c"), (2, None))
        self.assertEqual(log.exit("d"), (None, None))
        self.assertIsNone(log.json("SNAP", "a"))
        self.assertIn("_error", log.json("SNAP", "b"))

    def test_checks_tally(self):
        checks = serial_log.Checks()
        checks.add(True, "one", "s1")
        checks.add(False, "two", "s2", "why")
        checks.add(False, "three", "s2")
        self.assertEqual(checks.failed_scenarios(), ["s2"])
        self.assertEqual(checks.results[1][2], "FAIL two: why")
        self.assertEqual(checks.summary(), 1)


if __name__ == "__main__":
    unittest.main()

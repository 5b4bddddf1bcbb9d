#!/usr/bin/env python3
"""Is a module file signed by a certificate, as the kernel reads a signature? Checked without the
agent: the trailer (struct module_signature + "~Module signature appended~\\n") parsed here, the
PKCS#7 verified by openssl against the certificate over the bytes before it.

Usage: modsig-check.py CERT FILE...
Prints per file "SIGNED <file> id_type=2 sig_len=N" or "UNSIGNED <file>: <why>".
Exit: 0 every file signed by CERT, 1 some file is not, 2 bad usage or no openssl.
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

MAGIC = b"~Module signature appended~\n"
PKEY_ID_PKCS7 = 2


def check(cert, path, tmp):
    data = open(path, "rb").read()
    if not data.endswith(MAGIC):
        return "no '~Module signature appended~' trailer"
    info = data[:-len(MAGIC)]
    if len(info) < 12:
        return "trailer too short"
    _algo, _hash, id_type, signer_len, key_id_len, sig_len = struct.unpack(">BBBBB3xI", info[-12:])
    if id_type != PKEY_ID_PKCS7:
        return "id_type %d, not PKCS#7 (2)" % id_type
    if signer_len or key_id_len:
        return "signer_len %d, key_id_len %d: the kernel wants 0 for PKCS#7" % (signer_len, key_id_len)
    body_end = len(info) - 12 - sig_len
    if sig_len == 0 or body_end <= 0:
        return "sig_len %d does not fit the file" % sig_len
    sig = os.path.join(tmp, "sig.p7")
    content = os.path.join(tmp, "content")
    with open(sig, "wb") as f:
        f.write(info[body_end:len(info) - 12])
    with open(content, "wb") as f:
        f.write(data[:body_end])
    # -nointern: the signer must be CERT (the kernel's PKCS#7 carries no certificate);
    # -noverify: CERT is self-made, no chain to check; the signature itself is verified.
    r = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", sig, "-content", content,
                        "-certfile", cert, "-nointern", "-noverify", "-out", os.devnull],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        return "openssl cms -verify with %s failed: %s" % (cert, r.stdout.decode(errors="replace").strip()[:300])
    return None


def main(argv):
    if len(argv) < 2 or not shutil.which("openssl"):
        print(__doc__, file=sys.stderr)
        return 2
    cert, files = argv[0], argv[1:]
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            try:
                why = check(cert, path, tmp)
            except OSError as e:
                why = e.strerror
            if why:
                print("UNSIGNED %s: %s" % (path, why))
                bad += 1
            else:
                print("SIGNED %s" % path)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

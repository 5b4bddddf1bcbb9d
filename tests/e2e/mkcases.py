#!/usr/bin/env python3
"""Make rule test cases from one real kernel module (ELF64 little endian, x86-64).

Every case is a separate file, a copy of the input edited in place (same size, same layout,
python stdlib only), so that exactly one loadability rule is hit:

  stripped           the module signature removed (the base of every case below)
  crc                one __versions CRC changed (a symbol really undefined, not module_layout)
  import_ns          one namespace the module uses dropped from .modinfo (import_ns= -> NULs)
  license            licence made non-GPL: "license=Proprietary" padded with NULs
  vermagic           a non-release word of vermagic changed ("mod_unload" -> "mod_unloaX")
  vermagic_release   only the release word changed, same length (skipped with SHF_ALLOC
                     __versions on a kernel with MODVERSIONS, so it loads there; a kernel
                     without MODVERSIONS compares the whole vermagic)
  undef_renamed      one undefined symbol renamed in .strtab to a name nothing exports (one
                     with a __versions entry when the module has __versions)
  versions_noalloc   SHF_ALLOC cleared on the __versions section header
  versions_noalloc_release
                     both: SHF_ALLOC cleared and the release word changed (without an
                     SHF_ALLOC __versions the whole vermagic must match)
  versions_missing   one __versions entry renamed away: an undefined symbol has no version
  module_layout      the module_layout CRC changed (only if the module has that entry)
  signed_crc         signature KEPT and one CRC changed (a signed module that was modified)
  export_crc         the CRC of one symbol the module EXPORTS changed in __kcrctab (at its
                     __crc_<sym>, which must sit at the index of __ksymtab_<sym>): a module
                     built against the original CRC is then refused; with --user USER.ko, a
                     symbol that USER imports with a __versions entry. Only with --only.
  this_module_size   sh_size of .gnu.linkonce.this_module shrunk by 64 bytes (6.12+ check
                     sizeof(struct module) exactly; older kernels do not). Only with --only.
  sig_malformed      signature KEPT, the first byte of its PKCS#7 blob (0x30, the outer
                     SEQUENCE) made 0x04: the kernel cannot parse it (EBADMSG, fatal even
                     without sig_enforce). Only with --only.
  sig_unsupported    signature KEPT, struct module_signature's id_type made 1 (PGP) instead of
                     2 (PKCS#7): mod_check_sig() says ENOPKG, which the kernel treats like an
                     unsigned module. Only with --only.
  sig_oversized      a signature trailer appended to the stripped module: struct
                     module_signature with id_type 1 (PGP, not PKCS#7) and sig_len exactly
                     the bytes before it (file_len - 12): mod_check_sig() checks the length
                     first (>=), so EBADMSG (fatal), not the ENOPKG the type would give. Only
                     with --only.
  no_vermagic        the vermagic= entry of .modinfo overwritten with NULs: check_modinfo()
                     goes through try_to_force_load() ("bad vermagic: kernel tainted.", loads
                     with MODULE_FORCE_LOAD=y). Only with --only.
  symtab_twice       .strtab (after .symtab) made a second SHT_SYMTAB (sh_link kept valid): 6.1
                     uses the first symbol table and loads it, 6.4+ refuse any count but one
                     ("module has no symbols (stripped?)", ENOEXEC). Only with --only.
  machine            e_machine 62 (x86-64) -> 183 (AArch64): "Invalid architecture in ELF
                     header" (ENOEXEC). Only with --only.
  shentsize          e_shentsize 64 -> 8: "Invalid ELF section header size" (ENOEXEC). Only
                     with --only.
  sig_params         signature KEPT, struct module_signature's algo byte made 1: mod_check_sig()
                     says "PKCS#7 signature info has unexpected non-zero params" (EBADMSG). Only
                     with --only.
  sig_cms_noattr     the stripped module signed again with --sign-key/--sign-cert by `openssl cms
                     -sign -noattr -nocerts -binary -outform DER -md sha256`, the trailer
                     appended as sign-file does: what sign-file makes, by a key the kernel does
                     not know (ENOKEY: a taint, EKEYREJECTED enforced). Only with --only.
  sig_cms_authattrs  the same with signed attributes (contentType, signingTime, messageDigest; no
                     -noattr): pkcs7_verify() refuses a module signature with authattrs whatever
                     the key (EKEYREJECTED). signingTime is set to 2026-01-01 and the attributes
                     signed again (openssl dgst), so the case is the same bytes every run. Only
                     with --only.
  sig_cms_econtent   as sig_cms_noattr with eContentType SPC_INDIRECT_DATA (-econtent_type, as an
                     Authenticode signer would make): OpenSSL then writes SignedData version 3
                     beside a version 1 SignerInfo (issuer and serial), which the kernel's parser
                     refuses: "SignedData-SignerInfo version mismatch" (EBADMSG). Only with --only.
  sig_cms_econtent_keyid
                     the same signed by key identifier (-keyid: SignerInfo version 3): the
                     versions agree, but msIndirectData without signed attributes: "Authenticode
                     requires AuthAttrs" (EBADMSG)
  sig_cms_econtent_attrs
                     the same with signed attributes: it parses, then pkcs7_verify() refuses
                     anything but pkcs7-data (EKEYREJECTED)
  sig_cms_econtent_other
                     eContentType 1.2.3.4, by key identifier: the parser takes only data and
                     msIndirectData: "Unsupported data type" (EINVAL)
  module_layout_missing
                     the __versions entry of module_layout renamed away (Debian's check_version:
                     "no symbol version for module_layout", ENOEXEC). Only with --only.
  undef_last_enoent  two undefined symbols exported by vmlinux fail: the earlier one in .symtab
                     with its CRC changed (EINVAL), the later renamed (ENOENT): simplify_symbols()
                     keeps the last failure's errno, ENOENT. Only with --only.
  undef_last_einval  the same, the other way round: the earlier renamed, the later's CRC
                     changed: EINVAL. Only with --only.
  versions_fake      for a module WITHOUT __versions (built for a kernel without MODVERSIONS,
                     e.g. Debian 7.x): its SHF_ALLOC .note.Linux (a multiple of 64 bytes)
                     renamed __versions (in .shstrtab, type PROGBITS) and filled with entries
                     of symbols it imports, each with a wrong CRC (0x5a5a5a5a): a __versions
                     table that a kernel without MODVERSIONS must ignore
  versions_fake_release
                     both: the fake __versions and the release word changed (a kernel with
                     MODVERSIONS would skip the release word; one without compares it)
  export_vmlinux     one exported name in __ksymtab_strings (where its __kstrtab_<sym> points:
                     the kernel reads the name there) overwritten with a vmlinux export of the
                     same or shorter length (kfree, NUL padded): "exports duplicate symbol kfree
                     (owned by kernel)" (ENOEXEC). Only with --only.
  renamed            the module renamed to --name NAME (not longer): .modinfo name= and the
                     name in struct module (.gnu.linkonce.this_module), NUL padded. Only with
                     --only.

Files the kernel does not take for a module, and what it refuses in them (issue 16 item 4),
each only with --only; the output may no longer parse as a module (written as it is):
  elf_magic          e_ident[1] 'E' -> 'X': "Invalid ELF header magic"
  elf_dyn            e_type ET_REL -> ET_DYN: "Invalid ELF header type: 3 != 1"
  truncated          the first half of the file only: "Invalid ELF section header overflow"
  section0           section 0's sh_type SHT_NULL -> SHT_PROGBITS: "ELF Spec violation:
                     section 0 type(1)!=SH_NULL ..."
  shname_range       sh_name of .text (SHF_ALLOC) past the end of .shstrtab: "Invalid ELF
                     section name in module"
  modinfo_twice      .comment (not SHF_ALLOC) renamed .modinfo: 6.4+ "Only one .modinfo
                     section must exist."; 6.1 finds the SHF_ALLOC one only and loads it
  modinfo_noalloc    SHF_ALLOC cleared on .modinfo: 6.1 does not see it (no vermagic: a
                     forced load; no licence: GPL-only symbols unknown, ENOENT); 6.4+ read it
  this_module_nobits .gnu.linkonce.this_module made SHT_NOBITS: 6.4+ "... section must have
                     a size set" (6.1 has no such check; not asked there)
  write_exec         SHF_EXECINSTR added to .data (SHF_WRITE): "section .data (index N) has
                     invalid WRITE|EXEC flags"
  common_symbol      the first defined, named symbol's st_shndx -> SHN_COMMON: "please
                     compile with -fno-common"
  shndx_range        the same symbol's st_shndx -> e_shnum + 3: "Symbol %s has an invalid
                     section index"
  strtab_link        .symtab's sh_link -> 0: "Invalid ELF sh_link!=SHN_UNDEF(0) ..."
  strtab_lead        .strtab's leading NUL -> 'X': 7.x "symbol string table missing leading
                     NUL"; older kernels do not look
  shstrtab_range, shstrndx_range, shstrtab_type, shstrtab_empty, shstrtab_unterminated
                     .shstrtab's sh_offset at the end of the file, e_shstrndx = e_shnum,
                     .shstrtab SHT_PROGBITS (6.4+ refuse; 6.1 loads), its sh_size 0, one byte
                     short (no NUL at its end)
  shname_noalloc     .comment's (not SHF_ALLOC) sh_name past .shstrtab (6.4+ refuse; 6.1 loads)
  this_module_noalloc, this_module_missing, this_module_twice
                     .gnu.linkonce.this_module not SHF_ALLOC, renamed gnu.linkonce.this_module,
                     or .comment renamed .gnu.linkonce.this_module (6.4+ refuse; 6.1 loads)
  symtab_none        .symtab made SHT_PROGBITS: "module has no symbols (stripped?)"
  strtab_type, strtab_empty, strtab_unterminated, symbol_name_range
                     the symbol string table SHT_PROGBITS (6.4+), its sh_size 0, one byte short,
                     a symbol's st_name = its size (the last three: 7.x)
  ext_crcs_only, ext_names_short
                     an SHF_ALLOC section renamed __version_ext_crcs alone; two renamed
                     __version_ext_crcs and __version_ext_names with fewer names than CRCs
                     (6.14+: elf_validity_cache_index_versions)
  out_of_tree        the intree=Y entry of .modinfo overwritten with NULs: "loading out-of-tree
                     module taints kernel." (once per boot), loads. Only with --only.
  staging            one alias= entry of .modinfo replaced by staging=Y: "module is from the
                     staging directory ..." (every time), loads. Only with --only.
  test_module        one alias= entry replaced by test=Y: "loading test module taints kernel."
                     (once per boot), loads. Only with --only.
  livepatch          one alias= entry replaced by livepatch=Y: "tainting kernel with
                     TAINT_LIVEPATCH" (once per boot), loads. Only with --only.
  no_retpoline       the retpoline=Y entry of .modinfo overwritten with NULs: "loading module
                     not compiled with retpoline compiler." (once per boot, and only while a
                     spectre_v2 mitigation is on), loads. Only with --only.
  exports_nocrc      sh_name of __kcrctab and __kcrctab_gpl pointed 2 bytes further ("kcrctab",
                     "kcrctab_gpl"): a module that exports, without CRCs for them on a
                     MODVERSIONS kernel: "no versions for exported symbols: kernel tainted."
                     (forced load, once per boot). Only with --only.
  btf_name_range     the first type of .BTF named at string offset 0xffffff, past the kernel's
                     and the module's strings: btf_module_notify() cannot parse it (EINVAL):
                     7.2 refuses, 6.x load with a warning. Only with --only.
  btf_type_range     the first modifier type (typedef, const, ...) of .BTF refers to type id
                     0xfffff, past the last: the same. Only with --only.
  no_kflagstab       sh_name of __kflagstab pointed 2 bytes further ("kflagstab"): 7.2 "no flags
                     for exported symbols" (ENOEXEC) for a module that exports. Only with --only.
  import_ns_module   two adjacent import_ns= entries of a namespace imported at least three times
                     (PWM) overwritten by one "import_ns=module:<name>": every namespace stays
                     imported; 6.16+ setup_modinfo() refuses the import (EPERM), older kernels
                     take it as an ordinary namespace. Only with --only.

A case that does not apply to the module is skipped with a "not applicable" line on stderr
and does not count as a failure: the cases that edit __versions (crc, signed_crc,
versions_noalloc[_release], versions_missing, module_layout) on a module without __versions
(a kernel without MODVERSIONS: every CRC is 0 and modules carry no table), module_layout on a
module without that entry, export_crc on a module without __kcrctab, versions_fake*
on a module that has __versions.

Usage: mkcases.py [--prefix P] [--symvers Module.symvers] [--only CASE,...] [--keep-signature]
                  [--user USER.ko[.xz]] [--name NAME] [--sign-key KEY.pem --sign-cert CERT.pem]
                  INPUT.ko[.xz] OUTDIR
Writes OUTDIR/<P><case>.ko and prints a manifest, one line per case:
  <P><case> TAB <input> TAB <output>
--symvers (the target kernel's) picks for import_ns a namespace the module really uses, and
for crc / versions_missing / undef_renamed / versions_fake a symbol the kernel exports;
without it the first candidate in the file is taken. A .ko.xz input is decompressed (lzma);
outputs are plain .ko.
--keep-signature edits the signed input instead (the signature then no longer matches the
bytes: what does a kernel do when it does not know the key?); "stripped" and "signed_crc" are
skipped then.
Also: mkcases.py modname FILE   prints the module's name from .modinfo (name=).
"""

import argparse
import lzma
import os
import struct
import sys

SIG_MAGIC = b"~Module signature appended~\n"
SHF_ALLOC = 0x2
SHT_SYMTAB = 2
VERSION_ENTRY = 64  # struct modversion_info { unsigned long crc; char name[56]; }
VERSION_NAME_LEN = VERSION_ENTRY - 8


class CaseError(Exception):
    pass


class NotApplicable(CaseError):
    """The case does not exist for this module (not a failure)."""


def read_module(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        data = lzma.decompress(data)
    return bytearray(data)


def signature_len(data):
    """Bytes of the appended signature (struct module_signature + PKCS#7 + magic), or 0."""
    if not data.endswith(SIG_MAGIC):
        return 0
    end = len(data) - len(SIG_MAGIC)
    if end < 12:
        raise CaseError("signature trailer without struct module_signature")
    # u8 algo, hash, id_type, signer_len, key_id_len, pad[3]; __be32 sig_len
    sig_len = struct.unpack_from(">I", data, end - 4)[0]
    if sig_len >= end - 12:
        # mod_check_sig() refuses it (EBADMSG); the kernel has dropped only the magic
        return len(SIG_MAGIC)
    return 12 + sig_len + len(SIG_MAGIC)


def strip_signature(data):
    n = signature_len(data)
    return bytearray(data[: len(data) - n]) if n else bytearray(data)


class Elf:
    def __init__(self, data):
        self.data = data
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise CaseError("not an ELF64 little-endian file")
        self.shoff = struct.unpack_from("<Q", data, 0x28)[0]
        self.shentsize, self.shnum, self.shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        # the section headers are read as Elf64_Shdr whatever e_shentsize says, as the kernel
        # does (the shentsize case makes it wrong; modname must still read the module)
        if self.shoff + self.shnum * 64 > len(data):
            raise CaseError("bad section header table")
        self.sections = []
        for i in range(self.shnum):
            off = self.shoff + i * 64
            (name, typ, flags, _addr, offset, size, link, info, _align,
             entsize) = struct.unpack_from("<IIQQQQIIQQ", data, off)
            self.sections.append(dict(index=i, hdr=off, name_off=name, type=typ, flags=flags,
                                      offset=offset, size=size, link=link, info=info,
                                      entsize=entsize))
        shstr = self.sections[self.shstrndx]
        for s in self.sections:
            s["name"] = self.cstr(shstr["offset"] + s["name_off"])

    def cstr(self, off):
        end = self.data.index(b"\0", off)
        return self.data[off:end].decode("latin-1")

    def section(self, name):
        for s in self.sections:
            if s["name"] == name:
                return s
        raise CaseError("no section %s" % name)

    def has_section(self, name):
        return any(s["name"] == name for s in self.sections)

    def need_versions(self):
        if not self.has_section("__versions"):
            raise NotApplicable("no __versions section (built for a kernel without MODVERSIONS)")

    def symbols(self):
        """[(symtab entry offset, st_name, shndx, name)] for every named symbol."""
        symtab = next(s for s in self.sections if s["type"] == SHT_SYMTAB)
        strtab = self.sections[symtab["link"]]
        out = []
        for i in range(1, symtab["size"] // 24):
            off = symtab["offset"] + i * 24
            st_name, _info, _other, shndx = struct.unpack_from("<IBBH", self.data, off)
            if st_name:
                out.append((off, st_name, shndx, self.cstr(strtab["offset"] + st_name)))
        return out, strtab

    def undefined(self):
        syms, _ = self.symbols()
        return [name for _, _, shndx, name in syms if shndx == 0]

    def versions(self):
        """[(entry offset, crc, name)] of __versions."""
        s = self.section("__versions")
        out = []
        for off in range(s["offset"], s["offset"] + s["size"], VERSION_ENTRY):
            crc = struct.unpack_from("<Q", self.data, off)[0]
            raw = bytes(self.data[off + 8: off + VERSION_ENTRY])
            out.append((off, crc, raw.split(b"\0", 1)[0].decode("latin-1")))
        return out

    def modinfo(self):
        """[(offset, length, text)] of the NUL separated .modinfo strings (of the first
        SHF_ALLOC .modinfo, as 6.1's find_sec() takes it; else of the first)."""
        s = next((s for s in self.sections if s["name"] == ".modinfo" and s["flags"] & SHF_ALLOC),
                 None) or self.section(".modinfo")
        out, pos, end = [], s["offset"], s["offset"] + s["size"]
        while pos < end:
            nul = self.data.index(b"\0", pos)
            if nul > pos:
                out.append((pos, nul - pos, self.data[pos:nul].decode("latin-1")))
            pos = nul + 1
        return out

    def modinfo_value(self, key):
        for _, _, text in self.modinfo():
            if text.startswith(key + "="):
                return text[len(key) + 1:]
        return None


def load_symvers(path):
    """{symbol: namespace} of a Module.symvers (crc, symbol, module, export type[, ns])."""
    out = {}
    with open(path, encoding="latin-1") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 4:
                out[cols[1]] = cols[4] if len(cols) > 4 else ""
    return out


def versioned_undefined(elf, symvers):
    """__versions entries of symbols the module really leaves undefined (not module_layout),
    exported by the kernel when a symvers is known: [(entry offset, crc, name)]."""
    elf.need_versions()
    undef = set(elf.undefined())
    out = [v for v in elf.versions() if v[2] in undef and v[2] != "module_layout"]
    if symvers is not None:
        out = [v for v in out if v[2] in symvers]
    if not out:
        raise CaseError("no __versions entry of an undefined symbol")
    return out


def unused_name(name, taken):
    """A same-length name that no symbol of the module uses (upper case, then a letter swap)."""
    cand = name.upper()
    if cand == name or cand in taken:
        cand = "Q" + name[1:] if name[0] != "Q" else "Z" + name[1:]
    if cand in taken:
        raise CaseError("no unused name for %s" % name)
    return cand


def change_crc(data, off):
    crc = struct.unpack_from("<Q", data, off)[0]
    struct.pack_into("<Q", data, off, (crc & ~0xFFFFFFFF) | ((crc ^ 0x5A5A5A5A) & 0xFFFFFFFF))


def overwrite_modinfo(elf, key, replace):
    """replace(text) -> new text (not longer) or None; NUL padded in place. Returns count."""
    n = 0
    for off, length, text in elf.modinfo():
        if not text.startswith(key + "="):
            continue
        new = replace(text)
        if new is None:
            continue
        raw = new.encode("latin-1")
        if len(raw) > length:
            raise CaseError("%r does not fit in place of %r" % (new, text))
        elf.data[off:off + length] = raw + b"\0" * (length - len(raw))
        n += 1
    return n


# --- the cases: each takes (stripped bytes, signed original, symvers) and returns new bytes ---

def case_stripped(data, _signed, _symvers):
    return data, "signature removed"


def case_crc(data, _signed, symvers):
    off, crc, name = versioned_undefined(Elf(data), symvers)[0]
    change_crc(data, off)
    return data, "CRC of %s 0x%08x -> 0x%08x" % (name, crc & 0xFFFFFFFF,
                                                  struct.unpack_from("<Q", data, off)[0] & 0xFFFFFFFF)


def case_signed_crc(_data, signed, symvers):
    if not signature_len(signed):
        raise CaseError("input is not signed")
    data = bytearray(signed)
    off, _crc, name = versioned_undefined(Elf(data), symvers)[0]
    change_crc(data, off)
    return data, "signature kept, CRC of %s changed" % name


def case_module_layout(data, _signed, _symvers):
    elf = Elf(data)
    elf.need_versions()
    for off, _crc, name in elf.versions():
        if name == "module_layout":
            change_crc(data, off)
            return data, "module_layout CRC changed"
    raise NotApplicable("no module_layout entry in __versions")


def case_import_ns(data, _signed, symvers):
    elf = Elf(data)
    imported = []
    for _, _, text in elf.modinfo():
        if text.startswith("import_ns=") and text[10:] not in imported:
            imported.append(text[10:])
    if symvers is not None:
        used = {symvers.get(s, "") for s in elf.undefined()}
        imported = [ns for ns in imported if ns in used]
    if not imported:
        raise CaseError("module imports no namespace it uses")
    ns = imported[0]
    n = overwrite_modinfo(elf, "import_ns", lambda t: "" if t == "import_ns=" + ns else None)
    return data, "import_ns=%s removed (%d entries)" % (ns, n)


def case_license(data, _signed, _symvers):
    elf = Elf(data)
    old = elf.modinfo_value("license")
    # a licence the kernel does not take for GPL-compatible, in the place the old one had
    new_licence = "Proprietary" if len(old or "") >= len("Proprietary") else "MIT"
    if overwrite_modinfo(elf, "license", lambda t: "license=" + new_licence) != 1:
        raise CaseError("not exactly one license= entry")
    return data, "license %r -> %r" % (old, new_licence)


def case_vermagic(data, _signed, _symvers):
    elf = Elf(data)
    old = elf.modinfo_value("vermagic")
    words = old.split(" ")
    if "mod_unload" in words:
        words[words.index("mod_unload")] = "mod_unloaX"
    elif len(words) > 1 and words[1]:
        words[1] = words[1][:-1] + ("X" if words[1][-1] != "X" else "Y")
    else:
        raise CaseError("vermagic %r has no second word" % old)
    new = " ".join(words)
    overwrite_modinfo(elf, "vermagic", lambda t: "vermagic=" + new)
    return data, "vermagic %r -> %r" % (old, new)


def case_vermagic_release(data, _signed, _symvers):
    elf = Elf(data)
    old = elf.modinfo_value("vermagic")
    release, sep, rest = old.partition(" ")
    release = release[:-1] + ("X" if release[-1] != "X" else "Y")
    new = release + sep + rest
    overwrite_modinfo(elf, "vermagic", lambda t: "vermagic=" + new)
    return data, "vermagic %r -> %r" % (old, new)


def case_undef_renamed(data, _signed, symvers):
    elf = Elf(data)
    syms, strtab = elf.symbols()
    # with __versions, a symbol that has an entry (else the missing version would decide)
    versioned = {v[2] for v in elf.versions()} if elf.has_section("__versions") else None
    refs = {}
    for _, st_name, _, _ in syms:
        refs[st_name] = refs.get(st_name, 0) + 1
    taken = {name for _, _, _, name in syms} | (versioned or set())
    for _, st_name, shndx, name in syms:
        if shndx != 0 or (versioned is not None and name not in versioned) or (
                symvers is not None and name not in symvers):
            continue
        # The string must belong to this symbol alone: referenced once, and no other symbol
        # name starts inside it (a linker-merged suffix like "foo" inside "barfoo").
        end = st_name + len(name)
        if refs[st_name] != 1 or any(st_name < o <= end for o in refs if o != st_name):
            continue
        new = unused_name(name, taken)
        if symvers is not None and new in symvers:
            continue
        off = strtab["offset"] + st_name
        data[off:off + len(name)] = new.encode("latin-1")
        return data, "undefined symbol %s renamed %s in .strtab" % (name, new)
    raise CaseError("no undefined symbol with a string of its own")


def case_versions_noalloc(data, _signed, _symvers):
    elf = Elf(data)
    elf.need_versions()
    s = elf.section("__versions")
    struct.pack_into("<Q", data, s["hdr"] + 8, s["flags"] & ~SHF_ALLOC)
    return data, "SHF_ALLOC cleared on __versions"


def case_versions_noalloc_release(data, signed, symvers):
    data, _ = case_versions_noalloc(data, signed, symvers)
    data, what = case_vermagic_release(data, signed, symvers)
    return data, "SHF_ALLOC cleared on __versions and " + what


def case_versions_missing(data, _signed, symvers):
    elf = Elf(data)
    cands = versioned_undefined(elf, symvers)
    # not the symbol the crc cases use, so the two cases name different symbols
    off, _crc, name = cands[1] if len(cands) > 1 else cands[0]
    taken = {n for _, _, _, n in elf.symbols()[0]} | {v[2] for v in elf.versions()}
    new = unused_name(name, taken).encode("latin-1")
    data[off + 8:off + VERSION_ENTRY] = new + b"\0" * (VERSION_NAME_LEN - len(new))
    return data, "__versions entry of %s renamed %s: %s has no version" % (
        name, new.decode(), name)


def case_export_crc(data, _signed, _symvers, user=None):
    elf = Elf(data)
    syms, _ = elf.symbols()
    # name -> (section index, st_value: the offset inside that section)
    defs = {name: (shndx, struct.unpack_from("<Q", data, off + 8)[0])
            for off, _, shndx, name in syms if shndx != 0}
    secs = elf.sections
    pair = {"__ksymtab": "__kcrctab", "__ksymtab_gpl": "__kcrctab_gpl"}
    wanted = None
    if user is not None:
        uelf = Elf(strip_signature(read_module(user)))
        uundef = set(uelf.undefined())
        wanted = {v[2]: i for i, v in enumerate(uelf.versions()) if v[2] in uundef}
    if not any(sec["name"].startswith("__kcrctab") for sec in secs):
        raise NotApplicable("no __kcrctab section (built for a kernel without MODVERSIONS)")
    cands = []
    for name, (crc_shndx, crc_off) in defs.items():
        if not name.startswith("__crc_") or crc_shndx >= len(secs):
            continue
        sym = name[len("__crc_"):]
        if "__ksymtab_" + sym not in defs or (wanted is not None and sym not in wanted):
            continue
        ks_shndx, ks_off = defs["__ksymtab_" + sym]
        # the kernel reads crcs[index in __ksymtab]; struct kernel_symbol is 12 bytes (PREL32)
        if (ks_shndx >= len(secs) or pair.get(secs[ks_shndx]["name"]) != secs[crc_shndx]["name"]
                or crc_off % 4 or ks_off % 12 or crc_off // 4 != ks_off // 12):
            continue
        cands.append((wanted[sym] if wanted is not None else 0, sym,
                      secs[crc_shndx]["offset"] + crc_off))
    if not cands:
        raise CaseError("no exported symbol with a __kcrctab entry%s" %
                        (" that %s uses" % user if user else ""))
    _, sym, off = min(cands)
    old = struct.unpack_from("<I", data, off)[0]
    struct.pack_into("<I", data, off, old ^ 0x5A5A5A5A)
    return data, "exported CRC of %s 0x%08x -> 0x%08x in __kcrctab" % (sym, old, old ^ 0x5A5A5A5A)


def case_this_module_size(data, _signed, _symvers):
    s = Elf(data).section(".gnu.linkonce.this_module")
    if s["size"] <= 64:
        raise CaseError(".gnu.linkonce.this_module is only %d bytes" % s["size"])
    struct.pack_into("<Q", data, s["hdr"] + 32, s["size"] - 64)
    return data, ".gnu.linkonce.this_module sh_size %d -> %d" % (s["size"], s["size"] - 64)


def signature_blob(signed):
    """(offset of the PKCS#7 blob, offset of struct module_signature) of a signed module."""
    n = signature_len(signed)
    if not n:
        raise CaseError("input is not signed")
    ms = len(signed) - len(SIG_MAGIC) - 12
    return len(signed) - n, ms


def case_sig_malformed(_data, signed, _symvers):
    data = bytearray(signed)
    blob, _ = signature_blob(data)
    if data[blob] != 0x30:
        raise CaseError("PKCS#7 blob starts with 0x%02x, not 0x30" % data[blob])
    data[blob] = 0x04
    return data, "signature kept, first PKCS#7 byte 0x30 -> 0x04 (at %d)" % blob


def case_sig_unsupported(_data, signed, _symvers):
    data = bytearray(signed)
    _, ms = signature_blob(data)
    if data[ms + 2] != 2:
        raise CaseError("module_signature id_type is %d, not 2 (PKCS#7)" % data[ms + 2])
    data[ms + 2] = 1
    return data, "signature kept, module_signature id_type 2 (PKCS#7) -> 1 (PGP)"


def case_sig_oversized(data, _signed, _symvers):
    if signature_len(data):
        raise CaseError("input still signed")
    # u8 algo, hash, id_type, signer_len, key_id_len, pad[3]; __be32 sig_len. The kernel's
    # file_len is the file without the magic: len(data) + 12.
    sig_len = len(data)
    data += struct.pack(">BBBBB3xI", 0, 0, 1, 0, 0, sig_len) + SIG_MAGIC
    return data, "trailer appended: id_type 1 (PGP), sig_len %d = file_len - 12" % sig_len


def case_sig_params(_data, signed, _symvers):
    data = bytearray(signed)
    _, ms = signature_blob(data)
    if data[ms + 2] != 2 or any(data[ms:ms + 2]) or any(data[ms + 3:ms + 8]):
        raise CaseError("module_signature is not a PKCS#7 one with zero params")
    data[ms] = 1
    return data, "signature kept, module_signature algo 0 -> 1"


# --- module signatures made here (openssl(1) only): sign-file's trailer around a CMS blob ---
SIGN = {"key": None, "cert": None}
OID_SIGNING_TIME = bytes.fromhex("06092a864886f70d010905")


def der_item(buf, off):
    """(tag, offset of the contents, length) of the DER item at off."""
    tag, n = buf[off], buf[off + 1]
    if n < 0x80:
        return tag, off + 2, n
    k = n & 0x7F
    return tag, off + 2 + k, int.from_bytes(buf[off + 2:off + 2 + k], "big")


def der_children(buf, off):
    """[(tag, item offset, contents offset, length)] of the constructed item at off."""
    _, pos, n = der_item(buf, off)
    out, end = [], pos + n
    while pos < end:
        tag, c, length = der_item(buf, pos)
        out.append((tag, pos, c, length))
        pos = c + length
    return out


def openssl(args, stdin=None):
    import subprocess
    r = subprocess.run(["openssl"] + args, input=stdin, capture_output=True)
    if r.returncode != 0:
        raise CaseError("openssl %s: %s" % (args[0], r.stderr.decode(errors="replace").strip()))
    return r.stdout


def cms_sign(image, attrs, econtent_type=None, keyid=False):
    if not SIGN["key"] or not SIGN["cert"]:
        raise CaseError("--sign-key and --sign-cert are needed")
    import tempfile
    with tempfile.NamedTemporaryFile() as f:
        f.write(image)
        f.flush()
        blob = bytearray(openssl(["cms", "-sign", "-binary", "-outform", "DER", "-nocerts", "-md", "sha256",
                                  "-signer", SIGN["cert"], "-inkey", SIGN["key"], "-in", f.name]
                                 + (["-nosmimecap"] if attrs else ["-noattr"])
                                 + (["-econtent_type", econtent_type] if econtent_type else [])
                                 + (["-keyid"] if keyid else [])))
    # ContentInfo -> [0] -> SignedData -> signerInfos (its last SET) -> the SignerInfo
    signed_data = der_children(blob, der_children(blob, 0)[1][1])[0][1]
    infos = der_children(blob, signed_data)[-1]
    info = der_children(blob, infos[1])[0][1]
    fields = der_children(blob, info)
    sig = fields[-1]
    aa = next((f for f in fields if f[0] == 0xA0), None)
    if (aa is not None) != attrs or sig[0] != 0x04:
        raise CaseError("unexpected CMS from openssl cms -sign")
    if attrs:
        # signingTime -> 2026-01-01, then the attributes signed again (their DER as a SET)
        start, end = aa[1], aa[2] + aa[3]
        at = blob.find(OID_SIGNING_TIME, start, end)
        if at < 0 or blob[at + 11:at + 15] != b"\x31\x0f\x17\x0d":
            raise CaseError("no UTCTime signingTime attribute")
        blob[at + 15:at + 28] = b"260101000000Z"
        new = openssl(["dgst", "-sha256", "-binary", "-sign", SIGN["key"]],
                      stdin=b"\x31" + bytes(blob[start + 1:end]))
        if len(new) != sig[3]:
            raise CaseError("signature of %d bytes, not %d" % (len(new), sig[3]))
        blob[sig[2]:sig[2] + sig[3]] = new
    return bytes(image) + bytes(blob) + struct.pack(">BBBBB3xI", 0, 0, 2, 0, 0, len(blob)) + SIG_MAGIC


def case_sig_cms_noattr(data, _signed, _symvers):
    if signature_len(data):
        raise CaseError("input still signed")
    return bytearray(cms_sign(data, False)), "signed again by openssl cms -sign -noattr (%s)" % SIGN["cert"]


def econtent_case(data, oid, keyid, attrs=False):
    if signature_len(data):
        raise CaseError("input still signed")
    return (bytearray(cms_sign(data, attrs, oid, keyid)),
            "signed again by openssl cms -sign%s -econtent_type %s%s (%s)"
            % ("" if attrs else " -noattr", oid, " -keyid" if keyid else "", SIGN["cert"]))


MS_INDIRECT_DATA = "1.3.6.1.4.1.311.2.1.4"  # SPC_INDIRECT_DATA, what Authenticode signs


def case_sig_cms_econtent(data, _signed, _symvers):
    return econtent_case(data, MS_INDIRECT_DATA, False)


def case_sig_cms_econtent_keyid(data, _signed, _symvers):
    return econtent_case(data, MS_INDIRECT_DATA, True)


def case_sig_cms_econtent_attrs(data, _signed, _symvers):
    return econtent_case(data, MS_INDIRECT_DATA, True, True)


def case_sig_cms_econtent_other(data, _signed, _symvers):
    return econtent_case(data, "1.2.3.4", True)


def case_sig_cms_authattrs(data, _signed, _symvers):
    if signature_len(data):
        raise CaseError("input still signed")
    return bytearray(cms_sign(data, True)), "signed again by openssl cms -sign with signed attributes (%s)" % SIGN["cert"]


def case_module_layout_missing(data, _signed, _symvers):
    elf = Elf(data)
    elf.need_versions()
    for off, _crc, name in elf.versions():
        if name == "module_layout":
            new = b"MODULE_LAYOUT"
            data[off + 8:off + VERSION_ENTRY] = new + b"\0" * (VERSION_NAME_LEN - len(new))
            return data, "__versions entry module_layout renamed MODULE_LAYOUT"
    raise NotApplicable("no module_layout entry in __versions")


VMLINUX_EXPORTS = set()  # symbols Module.symvers says vmlinux exports (--symvers)


def two_failures(data, crc_first):
    """An earlier and a later undefined symbol (in .symtab order, exported by vmlinux, with a
    __versions entry and a .strtab string of its own): one CRC changed, the other renamed."""
    elf = Elf(data)
    elf.need_versions()
    syms, strtab = elf.symbols()
    version_off = {name: off for off, _crc, name in elf.versions()}
    refs = {}
    for _, st_name, _, _ in syms:
        refs[st_name] = refs.get(st_name, 0) + 1
    taken = {name for _, _, _, name in syms} | set(version_off)
    cands = []
    for _, st_name, shndx, name in syms:
        end = st_name + len(name)
        if (shndx == 0 and name in version_off and name in VMLINUX_EXPORTS and name != "module_layout"
                and refs[st_name] == 1 and not any(st_name < o <= end for o in refs if o != st_name)
                and name not in [c[1] for c in cands]):
            cands.append((st_name, name))
    if len(cands) < 2:
        raise CaseError("fewer than two undefined vmlinux symbols with strings of their own")
    (first_st, first), (last_st, last) = cands[0], cands[-1]
    crc_st, crc_name, ren_st, ren_name = ((first_st, first, last_st, last) if crc_first
                                          else (last_st, last, first_st, first))
    change_crc(data, version_off[crc_name])
    new = unused_name(ren_name, taken)
    off = strtab["offset"] + ren_st
    data[off:off + len(ren_name)] = new.encode("latin-1")
    return data, "CRC of %s changed (EINVAL), %s renamed %s (ENOENT); %s is later in .symtab" % (
        crc_name, ren_name, new, last)


def case_undef_last_enoent(data, _signed, _symvers):
    return two_failures(data, True)


def case_undef_last_einval(data, _signed, _symvers):
    return two_failures(data, False)


def case_no_vermagic(data, _signed, _symvers):
    elf = Elf(data)
    old = elf.modinfo_value("vermagic")
    if old is None:
        raise CaseError("no vermagic= entry")
    n = overwrite_modinfo(elf, "vermagic", lambda t: "")
    return data, "vermagic %r removed (%d entr%s)" % (old, n, "y" if n == 1 else "ies")


def case_symtab_twice(data, _signed, _symvers):
    elf = Elf(data)
    symtabs = [s for s in elf.sections if s["type"] == SHT_SYMTAB]
    if len(symtabs) != 1:
        raise CaseError("%d symbol tables" % len(symtabs))
    sym = symtabs[0]
    later = [s for s in elf.sections if s["index"] > sym["index"] and s["name"] == ".strtab"]
    if not later:
        raise CaseError("no .strtab after .symtab")
    s = later[0]
    struct.pack_into("<I", data, s["hdr"] + 4, SHT_SYMTAB)
    struct.pack_into("<I", data, s["hdr"] + 40, sym["link"])  # sh_link: a valid index
    return data, "section %d (.strtab) made a second SHT_SYMTAB after .symtab (%d)" % (
        s["index"], sym["index"])


def case_machine(data, _signed, _symvers):
    old = struct.unpack_from("<H", data, 18)[0]
    if old != 62:
        raise CaseError("e_machine is %d, not 62 (x86-64)" % old)
    struct.pack_into("<H", data, 18, 183)
    return data, "e_machine 62 (x86-64) -> 183 (AArch64)"


def case_shentsize(data, _signed, _symvers):
    old = struct.unpack_from("<H", data, 0x3A)[0]
    struct.pack_into("<H", data, 0x3A, 8)
    return data, "e_shentsize %d -> 8" % old


def case_versions_fake(data, _signed, symvers):
    elf = Elf(data)
    if elf.has_section("__versions"):
        raise NotApplicable("the module has a __versions section")
    note = next((s for s in elf.sections if s["name"] == ".note.Linux"), None)
    if note is None or not note["flags"] & SHF_ALLOC or not note["size"] or (
            note["size"] % VERSION_ENTRY):
        raise CaseError("no SHF_ALLOC .note.Linux of a multiple of %d bytes" % VERSION_ENTRY)
    # its name string must be its own (no other section name inside it)
    end = note["name_off"] + len(".note.Linux")
    if any(s is not note and note["name_off"] <= s["name_off"] <= end for s in elf.sections):
        raise CaseError(".note.Linux shares its name string")
    n = note["size"] // VERSION_ENTRY
    names = [u for u in dict.fromkeys(elf.undefined())
             if len(u) < VERSION_NAME_LEN and (symvers is None or u in symvers)][:n]
    if len(names) < n:
        raise CaseError("fewer than %d undefined symbols for the fake __versions" % n)
    for i, name in enumerate(names):
        off = note["offset"] + i * VERSION_ENTRY
        raw = name.encode("latin-1")
        data[off:off + VERSION_ENTRY] = (struct.pack("<Q", 0x5A5A5A5A) + raw
                                         + b"\0" * (VERSION_NAME_LEN - len(raw)))
    shstr = elf.sections[elf.shstrndx]
    off = shstr["offset"] + note["name_off"]
    data[off:off + len(".note.Linux")] = b"__versions".ljust(len(".note.Linux"), b"\0")
    struct.pack_into("<I", data, note["hdr"] + 4, 1)  # sh_type SHT_PROGBITS
    return data, ".note.Linux made an SHF_ALLOC __versions of %d entr%s with CRC 0x5a5a5a5a: %s" % (
        n, "y" if n == 1 else "ies", ", ".join(names))


def case_versions_fake_release(data, signed, symvers):
    data, what = case_versions_fake(data, signed, symvers)
    data, what2 = case_vermagic_release(data, signed, symvers)
    return data, what + "; " + what2


# vmlinux exports on every kernel the suite boots, shortest first
DUPLICATE_EXPORTS = ("kfree", "kmalloc_trace", "__kmalloc")


def case_export_vmlinux(data, _signed, symvers):
    elf = Elf(data)
    syms, _ = elf.symbols()
    strs = elf.section("__ksymtab_strings")
    # offsets into __ksymtab_strings that some __kstrtab*_ symbol points at
    points = {struct.unpack_from("<Q", data, off + 8)[0]: name for off, _, shndx, name in syms
              if shndx == strs["index"]}
    for value, name in sorted(points.items()):
        if not name.startswith("__kstrtab_"):
            continue
        sym = name[len("__kstrtab_"):]
        if elf.cstr(strs["offset"] + value) != sym:
            continue
        # the string is this symbol's alone: nothing else points inside it
        if any(value < o <= value + len(sym) for o in points if o != value):
            continue
        new = next((v for v in DUPLICATE_EXPORTS
                    if len(v) <= len(sym) and (symvers is None or v in symvers)), None)
        if new is None:
            continue
        off = strs["offset"] + value
        data[off:off + len(sym)] = new.encode("latin-1").ljust(len(sym), b"\0")
        return data, "exported name %s -> %s in __ksymtab_strings" % (sym, new)
    raise CaseError("no exported name to overwrite with one of %s" % ", ".join(DUPLICATE_EXPORTS))


def case_renamed(data, _signed, _symvers, name=None):
    if not name:
        raise CaseError("renamed needs --name")
    elf = Elf(data)
    old = elf.modinfo_value("name")
    if not old:
        raise CaseError("no name= in .modinfo")
    if len(name) > len(old):
        raise CaseError("--name %s is longer than %s" % (name, old))
    if overwrite_modinfo(elf, "name", lambda t: "name=" + name) != 1:
        raise CaseError("not exactly one name= entry")
    s = elf.section(".gnu.linkonce.this_module")
    raw = bytes(data[s["offset"]:s["offset"] + s["size"]])
    at = raw.find(old.encode("latin-1") + b"\0")
    if at < 0:
        raise CaseError("struct module does not hold the name %s" % old)
    off = s["offset"] + at
    data[off:off + len(old)] = name.encode("latin-1").ljust(len(old), b"\0")
    return data, "module %s renamed %s (.modinfo name=, struct module at +%d)" % (old, name, at)


SHT_NOBITS = 8
SHF_WRITE = 0x1
SHF_EXECINSTR = 0x4
SHN_COMMON = 0xFFF2


def case_elf_magic(data, _signed, _symvers):
    data[1] = ord("X")
    return data, "e_ident \\177ELF -> \\177XLF"


def case_elf_dyn(data, _signed, _symvers):
    struct.pack_into("<H", data, 16, 3)
    return data, "e_type ET_REL (1) -> ET_DYN (3)"


def case_truncated(data, _signed, _symvers):
    elf = Elf(data)
    half = len(data) // 2
    if elf.shoff < half:
        raise CaseError("the section header table is in the first half")
    return bytearray(data[:half]), "truncated to %d of %d bytes" % (half, len(data))


def case_section0(data, _signed, _symvers):
    elf = Elf(data)
    struct.pack_into("<I", data, elf.sections[0]["hdr"] + 4, 1)
    return data, "section 0 sh_type SHT_NULL -> SHT_PROGBITS"


def case_shname_range(data, _signed, _symvers):
    elf = Elf(data)
    s = elf.section(".text")
    if not s["flags"] & SHF_ALLOC:
        raise CaseError(".text is not SHF_ALLOC")
    past = elf.sections[elf.shstrndx]["size"] + 16
    struct.pack_into("<I", data, s["hdr"], past)
    return data, "section %d (.text) sh_name -> %d (past .shstrtab)" % (s["index"], past)


def case_modinfo_twice(data, _signed, _symvers):
    elf = Elf(data)
    s = elf.section(".comment")
    if s["flags"] & SHF_ALLOC:
        raise CaseError(".comment is SHF_ALLOC")
    struct.pack_into("<I", data, s["hdr"], elf.section(".modinfo")["name_off"])
    return data, "section %d (.comment) renamed .modinfo" % s["index"]


def case_modinfo_noalloc(data, _signed, _symvers):
    s = Elf(data).section(".modinfo")
    struct.pack_into("<Q", data, s["hdr"] + 8, s["flags"] & ~SHF_ALLOC)
    return data, "SHF_ALLOC cleared on .modinfo"


def case_this_module_nobits(data, _signed, _symvers):
    s = Elf(data).section(".gnu.linkonce.this_module")
    struct.pack_into("<I", data, s["hdr"] + 4, SHT_NOBITS)
    return data, ".gnu.linkonce.this_module sh_type -> SHT_NOBITS"


def case_write_exec(data, _signed, _symvers):
    s = Elf(data).section(".data")
    if not s["flags"] & SHF_WRITE:
        raise CaseError(".data is not SHF_WRITE")
    struct.pack_into("<Q", data, s["hdr"] + 8, s["flags"] | SHF_EXECINSTR)
    return data, "SHF_EXECINSTR added to section %d (.data)" % s["index"]


def first_defined_symbol(elf):
    syms, _ = elf.symbols()
    for off, _st_name, shndx, name in syms:
        if 0 < shndx < elf.shnum and not name.startswith("__gnu_lto"):
            return off, shndx, name
    raise CaseError("no defined, named symbol")


def case_common_symbol(data, _signed, _symvers):
    off, shndx, name = first_defined_symbol(Elf(data))
    struct.pack_into("<H", data, off + 6, SHN_COMMON)
    return data, "symbol %s st_shndx %d -> SHN_COMMON" % (name, shndx)


def case_shndx_range(data, _signed, _symvers):
    elf = Elf(data)
    off, shndx, name = first_defined_symbol(elf)
    struct.pack_into("<H", data, off + 6, elf.shnum + 3)
    return data, "symbol %s st_shndx %d -> %d (e_shnum %d)" % (name, shndx, elf.shnum + 3, elf.shnum)


def case_strtab_link(data, _signed, _symvers):
    elf = Elf(data)
    s = next(s for s in elf.sections if s["type"] == SHT_SYMTAB)
    struct.pack_into("<I", data, s["hdr"] + 40, 0)
    return data, "section %d (.symtab) sh_link %d -> 0" % (s["index"], s["link"])


def case_strtab_lead(data, _signed, _symvers):
    elf = Elf(data)
    strtab = elf.sections[next(s for s in elf.sections if s["type"] == SHT_SYMTAB)["link"]]
    if data[strtab["offset"]] != 0:
        raise CaseError("the symbol string table does not start with NUL")
    data[strtab["offset"]] = ord("X")
    return data, "symbol string table's first byte NUL -> 'X'"


# --- relocations (apply_relocations -> x86-64 apply_relocate_add: ENOEXEC) ---

SHT_RELA = 4
SHT_REL = 9
R_X86_64_32 = 10
R_X86_64_32S = 11
R_X86_64_GOTPCREL = 9


def relas(elf):
    """[(section, entry offset, r_offset, type, sym)] of RELA sections for loaded PROGBITS."""
    out = []
    for s in elf.sections:
        if s["type"] != SHT_RELA or s["info"] >= elf.shnum:
            continue
        target = elf.sections[s["info"]]
        if not target["flags"] & SHF_ALLOC or target["type"] == SHT_NOBITS:
            continue
        for off in range(s["offset"], s["offset"] + s["size"], 24):
            r_offset, info = struct.unpack_from("<QQ", elf.data, off)
            out.append((s, off, r_offset, info & 0xFFFFFFFF, info >> 32))
    if not out:
        raise CaseError("no RELA entries for a loaded section")
    return out


def case_reloc_type(data, _signed, _symvers):
    s, off, _r_offset, typ, sym = relas(Elf(data))[0]
    struct.pack_into("<Q", data, off + 8, (sym << 32) | R_X86_64_GOTPCREL)
    return data, "section %d entry 0: type %d -> %d (R_X86_64_GOTPCREL)" % (s["index"], typ, R_X86_64_GOTPCREL)


def case_reloc_nonzero(data, _signed, _symvers):
    elf = Elf(data)
    s, _off, r_offset, typ, _sym = relas(elf)[0]
    at = elf.sections[s["info"]]["offset"] + r_offset
    if data[at] != 0:
        raise CaseError("the first relocation's target is not zero already")
    data[at] = 0x5A
    return data, "section %d entry 0 (type %d): target byte -> 0x5a" % (s["index"], typ)


def case_reloc_rel(data, _signed, _symvers):
    s = relas(Elf(data))[0][0]
    struct.pack_into("<I", data, s["hdr"] + 4, SHT_REL)
    return data, "section %d (%s) SHT_RELA -> SHT_REL" % (s["index"], s["name"])


def case_reloc_overflow(data, _signed, _symvers):
    elf = Elf(data)
    symtab = next(t for t in elf.sections if t["type"] == SHT_SYMTAB)
    for s, off, _r_offset, typ, sym in relas(elf):
        shndx = struct.unpack_from("<H", data, symtab["offset"] + sym * 24 + 6)[0]
        if typ == R_X86_64_32S and 0 < shndx < elf.shnum:
            struct.pack_into("<Q", data, off + 8, (sym << 32) | R_X86_64_32)
            return data, "section %d entry at %#x: R_X86_64_32S of a symbol in section %d -> R_X86_64_32" % (
                s["index"], off, shndx)
    raise CaseError("no R_X86_64_32S of a defined symbol")


# --- the ELF variants of issue 16's rows C4, C7, C9-C11 (one field of the file each) ---

SHT_PROGBITS = 1
SHT_STRTAB = 3
SHDR_TYPE, SHDR_FLAGS, SHDR_OFFSET, SHDR_SIZE = 4, 8, 24, 32  # Elf64_Shdr field offsets


def set_shdr(data, s, field, value):
    struct.pack_into("<I" if field == SHDR_TYPE else "<Q", data, s["hdr"] + field, value)


def case_shstrtab_range(data, _signed, _symvers):
    elf = Elf(data)
    s = elf.sections[elf.shstrndx]
    set_shdr(data, s, SHDR_OFFSET, len(data))
    return data, "section %d (.shstrtab) sh_offset -> %d (the end of the file)" % (s["index"], len(data))


def case_shstrndx_range(data, _signed, _symvers):
    elf = Elf(data)
    struct.pack_into("<H", data, 0x3E, elf.shnum)
    return data, "e_shstrndx %d -> %d (e_shnum)" % (elf.shstrndx, elf.shnum)


def case_shstrtab_type(data, _signed, _symvers):
    elf = Elf(data)
    s = elf.sections[elf.shstrndx]
    set_shdr(data, s, SHDR_TYPE, SHT_PROGBITS)
    return data, "section %d (.shstrtab) sh_type SHT_STRTAB -> SHT_PROGBITS" % s["index"]


def case_shstrtab_empty(data, _signed, _symvers):
    elf = Elf(data)
    s = elf.sections[elf.shstrndx]
    set_shdr(data, s, SHDR_SIZE, 0)
    return data, "section %d (.shstrtab) sh_size %d -> 0" % (s["index"], s["size"])


def shortened_by_one(data, s, what):
    """sh_size - 1 of a string table that ends "x\0": its last byte is then not NUL."""
    end = s["offset"] + s["size"]
    if s["size"] < 2 or data[end - 1] != 0 or data[end - 2] == 0:
        raise CaseError("%s does not end with one NUL after a name" % what)
    set_shdr(data, s, SHDR_SIZE, s["size"] - 1)
    return data, "section %d (%s) sh_size %d -> %d (no NUL at its end)" % (
        s["index"], what, s["size"], s["size"] - 1)


def case_shstrtab_unterminated(data, _signed, _symvers):
    elf = Elf(data)
    return shortened_by_one(data, elf.sections[elf.shstrndx], ".shstrtab")


def case_shname_noalloc(data, _signed, _symvers):
    elf = Elf(data)
    s = elf.section(".comment")
    if s["flags"] & SHF_ALLOC:
        raise CaseError(".comment is SHF_ALLOC")
    past = elf.sections[elf.shstrndx]["size"] + 16
    struct.pack_into("<I", data, s["hdr"], past)
    return data, "section %d (.comment, not SHF_ALLOC) sh_name -> %d (past .shstrtab)" % (s["index"], past)


def case_this_module_noalloc(data, _signed, _symvers):
    s = Elf(data).section(".gnu.linkonce.this_module")
    set_shdr(data, s, SHDR_FLAGS, s["flags"] & ~SHF_ALLOC)
    return data, "SHF_ALLOC cleared on .gnu.linkonce.this_module"


def case_this_module_missing(data, _signed, _symvers):
    s = Elf(data).section(".gnu.linkonce.this_module")
    struct.pack_into("<I", data, s["hdr"], s["name_off"] + 1)
    return data, "section %d renamed gnu.linkonce.this_module: no .gnu.linkonce.this_module" % s["index"]


def case_this_module_twice(data, _signed, _symvers):
    elf = Elf(data)
    s = elf.section(".comment")
    if s["flags"] & SHF_ALLOC:
        raise CaseError(".comment is SHF_ALLOC")
    struct.pack_into("<I", data, s["hdr"], elf.section(".gnu.linkonce.this_module")["name_off"])
    return data, "section %d (.comment, not SHF_ALLOC) renamed .gnu.linkonce.this_module" % s["index"]


def case_symtab_none(data, _signed, _symvers):
    elf = Elf(data)
    symtabs = [s for s in elf.sections if s["type"] == SHT_SYMTAB]
    if len(symtabs) != 1:
        raise CaseError("%d symbol tables" % len(symtabs))
    set_shdr(data, symtabs[0], SHDR_TYPE, SHT_PROGBITS)
    return data, "section %d (.symtab) sh_type SHT_SYMTAB -> SHT_PROGBITS: no symbol table" % symtabs[0]["index"]


def symbol_strtab(elf):
    return elf.sections[next(s for s in elf.sections if s["type"] == SHT_SYMTAB)["link"]]


def case_strtab_type(data, _signed, _symvers):
    s = symbol_strtab(Elf(data))
    set_shdr(data, s, SHDR_TYPE, SHT_PROGBITS)
    return data, "section %d (the symbol string table) sh_type SHT_STRTAB -> SHT_PROGBITS" % s["index"]


def case_strtab_empty(data, _signed, _symvers):
    s = symbol_strtab(Elf(data))
    set_shdr(data, s, SHDR_SIZE, 0)
    return data, "section %d (the symbol string table) sh_size %d -> 0" % (s["index"], s["size"])


def case_strtab_unterminated(data, _signed, _symvers):
    return shortened_by_one(data, symbol_strtab(Elf(data)), "the symbol string table")


def case_symbol_name_range(data, _signed, _symvers):
    elf = Elf(data)
    syms, strtab = elf.symbols()
    off, _st_name, _shndx, name = syms[0]
    struct.pack_into("<I", data, off, strtab["size"])
    return data, "symbol %s st_name -> %d (the string table's size)" % (name, strtab["size"])


def rename_alloc_section(data, elf, s, new):
    """s (SHF_ALLOC) renamed NEW by writing NEW over its name string in .shstrtab (NUL padded):
    the string must be long enough and no other section's name may start inside it (a name
    that ends in it, as .rela<name> does, gets NEW as its tail: no SHF_ALLOC section has one)."""
    if not s["flags"] & SHF_ALLOC:
        raise CaseError("%s is not SHF_ALLOC" % s["name"])
    if len(s["name"]) < len(new):
        raise CaseError("%s is shorter than %s" % (s["name"], new))
    start, end = s["name_off"], s["name_off"] + len(s["name"])
    for o in elf.sections:
        if o is not s and o["type"] and start <= o["name_off"] < end:
            raise CaseError("%s shares its name string with section %d" % (s["name"], o["index"]))
        if o is not s and o["flags"] & SHF_ALLOC and o["name_off"] < start <= o["name_off"] + len(o["name"]):
            raise CaseError("%s ends in the name of SHF_ALLOC section %d" % (s["name"], o["index"]))
    off = elf.sections[elf.shstrndx]["offset"] + start
    data[off:off + len(s["name"])] = new.encode("latin-1").ljust(len(s["name"]), b"\0")
    return s["name"]


KEEP_NAMES = {".modinfo", ".gnu.linkonce.this_module", "__versions", ".symtab", ".strtab", ".shstrtab"}


def renamable(elf, new):
    """SHF_ALLOC sections whose name string can become NEW (rename_alloc_section's conditions)."""
    out = []
    for s in elf.sections:
        if s["name"] in KEEP_NAMES or not s["flags"] & SHF_ALLOC or len(s["name"]) < len(new):
            continue
        try:
            rename_alloc_section(bytearray(elf.data), elf, s, new)
        except CaseError:
            continue
        out.append(s)
    return out


def ext_name_count(data, s, most):
    """elf_validity_cache_index_versions(): how many names (strnlen + 1 steps) section s holds,
    counted up to MOST."""
    pos, end, n = s["offset"], s["offset"] + s["size"], 0
    while n < most:
        nul = data.find(b"\0", pos, end)
        if nul < 0:
            break
        pos, n = nul + 1, n + 1
    return n


def case_ext_crcs_only(data, _signed, _symvers):
    elf = Elf(data)
    cands = renamable(elf, "__version_ext_crcs")
    if not cands:
        raise CaseError("no SHF_ALLOC section to rename __version_ext_crcs")
    s = min(cands, key=lambda c: (c["size"], c["index"]))
    old = rename_alloc_section(data, elf, s, "__version_ext_crcs")
    return data, "section %d (%s, SHF_ALLOC) renamed __version_ext_crcs; no __version_ext_names" % (s["index"], old)


def case_ext_names_short(data, _signed, _symvers):
    elf = Elf(data)
    for names in renamable(elf, "__version_ext_names"):
        for crcs in sorted(renamable(elf, "__version_ext_crcs"), key=lambda c: -c["size"]):
            count = crcs["size"] // 4
            if crcs is names or ext_name_count(data, names, count) >= count:
                continue
            old_crcs = rename_alloc_section(data, elf, crcs, "__version_ext_crcs")
            old_names = rename_alloc_section(data, elf, names, "__version_ext_names")
            return data, ("section %d (%s) renamed __version_ext_crcs (%d CRCs), section %d (%s) "
                          "__version_ext_names (%d names)" % (crcs["index"], old_crcs, count, names["index"],
                                                             old_names, ext_name_count(data, names, count)))
    raise CaseError("no two SHF_ALLOC sections to rename with fewer names than CRCs")


# --- taints (warnings; the module loads) ---

def case_out_of_tree(data, _signed, _symvers):
    elf = Elf(data)
    if overwrite_modinfo(elf, "intree", lambda t: "") != 1:
        raise CaseError("not exactly one intree= entry")
    return data, "intree=Y removed"


def replace_alias(data, entry):
    elf = Elf(data)
    done = []

    def once(t):
        if done or len(t) < len(entry):
            return None
        done.append(t)
        return entry
    if overwrite_modinfo(elf, "alias", once) != 1:
        raise CaseError("no alias= entry to replace")
    return data, "%s in place of %s" % (entry, done[0])


def case_staging(data, _signed, _symvers):
    return replace_alias(data, "staging=Y")


def case_test_module(data, _signed, _symvers):
    return replace_alias(data, "test=Y")


def case_livepatch(data, _signed, _symvers):
    return replace_alias(data, "livepatch=Y")


def case_no_retpoline(data, _signed, _symvers):
    elf = Elf(data)
    if overwrite_modinfo(elf, "retpoline", lambda t: "") != 1:
        raise CaseError("not exactly one retpoline= entry")
    return data, "retpoline=Y removed"


def case_exports_nocrc(data, _signed, _symvers):
    elf = Elf(data)
    crcs = [s for s in elf.sections if s["name"] in ("__kcrctab", "__kcrctab_gpl")]
    if not crcs:
        raise NotApplicable("no __kcrctab section (built for a kernel without MODVERSIONS)")
    for s in crcs:
        struct.pack_into("<I", data, s["hdr"], s["name_off"] + 2)
    return data, "sections %s renamed %s" % (
        ", ".join(s["name"] for s in crcs), ", ".join(s["name"][2:] for s in crcs))


# --- module BTF (btf_module_notify: 7.2 refuses, 6.x warn; docs/kernel-load-checks.md K2) ---

BTF_MODIFIERS = (8, 9, 10, 11, 18)  # typedef, volatile, const, restrict, type_tag


def btf_types(data):
    """(file offset, kind) of each type record of the module's .BTF (24-byte header)."""
    elf = Elf(data)
    if not elf.has_section(".BTF"):
        raise NotApplicable("no .BTF section (a kernel without CONFIG_DEBUG_INFO_BTF_MODULES)")
    base = elf.section(".BTF")["offset"]
    magic, _version, _flags, hdr_len, type_off, type_len = struct.unpack_from("<HBBIII", data, base)
    if magic != 0xEB9F:
        raise CaseError(".BTF does not start with the BTF magic")
    at = base + hdr_len + type_off
    end = at + type_len
    out = []
    while at < end:
        info = struct.unpack_from("<I", data, at + 4)[0]
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        extra = {1: 4, 3: 12, 14: 4, 17: 4}.get(kind, 0)
        if kind in (4, 5, 15, 19):
            extra = 12 * vlen
        elif kind in (6, 13):
            extra = 8 * vlen
        out.append((at, kind))
        at += 12 + extra
    if not out:
        raise CaseError(".BTF has no types")
    return out


def case_btf_name_range(data, _signed, _symvers):
    at, _kind = btf_types(data)[0]
    struct.pack_into("<I", data, at, 0xFFFFFF)
    return data, ".BTF: the first type's name_off -> 0xffffff, past the kernel's and the module's strings"


def case_btf_type_range(data, _signed, _symvers):
    found = [(at, kind) for at, kind in btf_types(data) if kind in BTF_MODIFIERS]
    if not found:
        raise CaseError(".BTF has no modifier type")
    at, kind = found[0]
    struct.pack_into("<I", data, at + 8, 0xFFFFF)
    return data, ".BTF: the first modifier's (kind %d) type id -> 0xfffff, past the last type" % kind


def case_no_kflagstab(data, _signed, _symvers):
    elf = Elf(data)
    flags = [s for s in elf.sections if s["name"] == "__kflagstab"]
    if not flags:
        raise NotApplicable("no __kflagstab section (built for a kernel before 7.x)")
    if not any(s["name"] == "__ksymtab" and s["size"] for s in elf.sections):
        raise CaseError("the module exports nothing (__ksymtab)")
    struct.pack_into("<I", data, flags[0]["hdr"], flags[0]["name_off"] + 2)
    return data, "section __kflagstab renamed kflagstab"


def case_import_ns_module(data, _signed, _symvers):
    elf = Elf(data)
    entries = [(off, length, text) for off, length, text in elf.modinfo() if text.startswith("import_ns=")]
    count = {}
    for _, _, text in entries:
        count[text] = count.get(text, 0) + 1
    new = "import_ns=module:" + (elf.modinfo_value("name") or "x")
    for (off, length, text), (off2, length2, text2) in zip(entries, entries[1:]):
        gap = bytes(data[off + length:off2])
        if text == text2 and count[text] >= 3 and gap.strip(b"\0") == b"" and \
                len(new.encode("latin-1")) < off2 + length2 - off:
            span = off2 + length2 - off
            raw = new.encode("latin-1")
            data[off:off + span] = raw + b"\0" * (span - len(raw))
            return data, "two %s entries (of %d) -> %s" % (text, count[text], new)
    raise CaseError("no two adjacent import_ns= entries of a namespace imported three times")


CASES = [
    ("stripped", case_stripped),
    ("crc", case_crc),
    ("import_ns", case_import_ns),
    ("license", case_license),
    ("vermagic", case_vermagic),
    ("vermagic_release", case_vermagic_release),
    ("undef_renamed", case_undef_renamed),
    ("versions_noalloc", case_versions_noalloc),
    ("versions_noalloc_release", case_versions_noalloc_release),
    ("versions_missing", case_versions_missing),
    ("module_layout", case_module_layout),
    ("signed_crc", case_signed_crc),
    ("export_crc", case_export_crc),
    ("this_module_size", case_this_module_size),
    ("versions_fake", case_versions_fake),
    ("versions_fake_release", case_versions_fake_release),
    ("sig_malformed", case_sig_malformed),
    ("sig_unsupported", case_sig_unsupported),
    ("sig_oversized", case_sig_oversized),
    ("no_vermagic", case_no_vermagic),
    ("symtab_twice", case_symtab_twice),
    ("machine", case_machine),
    ("shentsize", case_shentsize),
    ("export_vmlinux", case_export_vmlinux),
    ("renamed", case_renamed),
    ("sig_params", case_sig_params),
    ("sig_cms_noattr", case_sig_cms_noattr),
    ("sig_cms_authattrs", case_sig_cms_authattrs),
    ("sig_cms_econtent", case_sig_cms_econtent),
    ("sig_cms_econtent_keyid", case_sig_cms_econtent_keyid),
    ("sig_cms_econtent_attrs", case_sig_cms_econtent_attrs),
    ("sig_cms_econtent_other", case_sig_cms_econtent_other),
    ("module_layout_missing", case_module_layout_missing),
    ("undef_last_enoent", case_undef_last_enoent),
    ("undef_last_einval", case_undef_last_einval),
    ("elf_magic", case_elf_magic),
    ("elf_dyn", case_elf_dyn),
    ("truncated", case_truncated),
    ("section0", case_section0),
    ("shname_range", case_shname_range),
    ("modinfo_twice", case_modinfo_twice),
    ("modinfo_noalloc", case_modinfo_noalloc),
    ("this_module_nobits", case_this_module_nobits),
    ("write_exec", case_write_exec),
    ("common_symbol", case_common_symbol),
    ("shndx_range", case_shndx_range),
    ("strtab_link", case_strtab_link),
    ("strtab_lead", case_strtab_lead),
    ("out_of_tree", case_out_of_tree),
    ("staging", case_staging),
    ("test_module", case_test_module),
    ("livepatch", case_livepatch),
    ("no_retpoline", case_no_retpoline),
    ("exports_nocrc", case_exports_nocrc),
    ("reloc_type", case_reloc_type),
    ("reloc_nonzero", case_reloc_nonzero),
    ("reloc_rel", case_reloc_rel),
    ("reloc_overflow", case_reloc_overflow),
    ("btf_name_range", case_btf_name_range),
    ("btf_type_range", case_btf_type_range),
    ("no_kflagstab", case_no_kflagstab),
    ("import_ns_module", case_import_ns_module),
]
# made only when --only names them
OPT_IN = {"export_crc", "this_module_size", "sig_malformed", "sig_unsupported", "sig_oversized",
          "no_vermagic", "symtab_twice", "machine", "shentsize", "export_vmlinux", "renamed",
          "sig_params", "sig_cms_noattr", "sig_cms_authattrs", "sig_cms_econtent",
          "sig_cms_econtent_keyid", "sig_cms_econtent_attrs", "sig_cms_econtent_other", "module_layout_missing",
          "undef_last_enoent", "undef_last_einval", "elf_magic", "elf_dyn", "truncated", "section0",
          "shname_range", "modinfo_twice", "modinfo_noalloc", "this_module_nobits", "write_exec",
          "common_symbol", "shndx_range", "strtab_link", "strtab_lead", "out_of_tree", "staging",
          "test_module", "livepatch", "no_retpoline", "exports_nocrc", "reloc_type", "reloc_nonzero", "reloc_rel", "reloc_overflow",
          "btf_name_range", "btf_type_range", "no_kflagstab", "import_ns_module"}
# the ELF variants of rows C4, C7, C9-C11
ELF_VARIANTS = ["shstrtab_range", "shstrndx_range", "shstrtab_type", "shstrtab_empty",
                "shstrtab_unterminated", "shname_noalloc", "this_module_noalloc", "this_module_missing",
                "this_module_twice", "symtab_none", "strtab_type", "strtab_empty", "strtab_unterminated",
                "symbol_name_range", "ext_crcs_only", "ext_names_short"]
CASES += [(n, globals()["case_" + n]) for n in ELF_VARIANTS]
OPT_IN |= set(ELF_VARIANTS)


def modname(path):
    try:
        name = Elf(strip_signature(read_module(path))).modinfo_value("name")
    except (CaseError, ValueError, struct.error, IndexError):
        # not readable as a module (elf_magic, truncated, ...): the kernel refuses it before it
        # has a name; the file's name stands in
        base = os.path.basename(path)
        return base[:base.index(".ko")] if ".ko" in base else base
    if not name:
        raise CaseError("%s: no name= in .modinfo" % path)
    return name


def main(argv):
    if len(argv) == 2 and argv[0] == "modname":
        try:
            print(modname(argv[1]))
        except (OSError, CaseError, lzma.LZMAError) as e:
            print("mkcases: %s: %s" % (argv[1], e), file=sys.stderr)
            return 2
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--prefix", default="")
    ap.add_argument("--symvers")
    ap.add_argument("--only", help="comma separated case names")
    ap.add_argument("--keep-signature", action="store_true")
    ap.add_argument("--user", help="export_crc: pick a symbol this module imports")
    ap.add_argument("--name", help="renamed: the module's new name")
    ap.add_argument("--sign-key", help="sig_cms_*: PEM private key")
    ap.add_argument("--sign-cert", help="sig_cms_*: PEM certificate of that key")
    ap.add_argument("input")
    ap.add_argument("outdir")
    args = ap.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    try:
        signed = read_module(args.input)
        stripped = strip_signature(signed)
        Elf(stripped)
        if args.keep_signature:
            if len(stripped) == len(signed):
                raise CaseError("--keep-signature: input is not signed")
            stripped = signed
        symvers = load_symvers(args.symvers) if args.symvers else None
        if args.symvers:
            with open(args.symvers, encoding="latin-1") as f:
                VMLINUX_EXPORTS.update(c[1] for c in (l.split("\t") for l in f)
                                       if len(c) >= 4 and c[2] == "vmlinux")
        SIGN["key"], SIGN["cert"] = args.sign_key, args.sign_cert
    except (OSError, CaseError, lzma.LZMAError) as e:
        print("mkcases: %s: %s" % (args.input, e), file=sys.stderr)
        return 2
    os.makedirs(args.outdir, exist_ok=True)
    failed = 0
    for name, fn in CASES:
        if (name not in only) if only is not None else (name in OPT_IN):
            continue
        if args.keep_signature and name in ("stripped", "signed_crc"):
            continue
        try:
            if name == "export_crc":
                data, what = fn(bytearray(stripped), signed, symvers, user=args.user)
            elif name == "renamed":
                data, what = fn(bytearray(stripped), signed, symvers, name=args.name)
            else:
                data, what = fn(bytearray(stripped), signed, symvers)
        except NotApplicable as e:
            print("mkcases: %s%s not applicable: %s" % (args.prefix, name, e), file=sys.stderr)
            continue
        except (CaseError, OSError, lzma.LZMAError) as e:
            print("mkcases: %s%s skipped: %s" % (args.prefix, name, e), file=sys.stderr)
            failed += 1
            continue
        out = os.path.join(args.outdir, args.prefix + name + ".ko")
        tmp = out + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
        print("mkcases: %s%s: %s" % (args.prefix, name, what), file=sys.stderr)
        print("%s%s\t%s\t%s" % (args.prefix, name, args.input, out))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

//! Reading a kernel module file (`.ko`) that klpt did not build: its ELF
//! header and the sections the kernel's loader looks at first (`.modinfo`,
//! `.gnu.linkonce.this_module`, `__versions`). Nothing here needs a kernel;
//! `modules::prebuilt` compares what is read with the kernel under test.

use std::io::Read;
use std::path::Path;

/// Larger files are refused unread: a module with full debug info is tens
/// of MiB; a path to something else must not cost all memory.
pub const MAX_BYTES: u64 = 512 << 20;

const ET_REL: u16 = 1;
const SHT_NOBITS: u32 = 8;
/// `struct module` starts with `enum module_state state` (padded to 8) and
/// `struct list_head list`; `char name[MODULE_NAME_LEN]` follows, on every
/// 64-bit kernel since modules had a `.gnu.linkonce.this_module`.
const THIS_MODULE_NAME_OFFSET: usize = 24;
/// `MODULE_NAME_LEN` on 64-bit kernels: `64 - sizeof(unsigned long)`.
const MODULE_NAME_LEN: usize = 56;

/// What klpt reads from a module file.
#[derive(Debug, Clone)]
pub struct Ko {
    pub machine: u16,
    pub big_endian: bool,
    /// `.modinfo` as the kernel reads it: `key=value` strings, in order.
    pub modinfo: Vec<(String, String)>,
    /// `name` of the `struct module` in `.gnu.linkonce.this_module`.
    pub this_module: Option<String>,
    /// `__versions`: the CRC the module was built with for each symbol it
    /// imports (`CONFIG_MODVERSIONS`).
    pub versions: Vec<(u32, String)>,
}

/// Reads a module file: a regular file of at most [`MAX_BYTES`].
pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.len() > MAX_BYTES {
        return Err(format!(
            "{} has {} bytes; kernel modules klpt loads are at most {} MiB",
            path.display(),
            meta.len(),
            MAX_BYTES >> 20
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(bytes)
}

struct Elf<'a> {
    b: &'a [u8],
    be: bool,
}

impl Elf<'_> {
    fn bytes(&self, off: u64, len: u64) -> Option<&[u8]> {
        let start = usize::try_from(off).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.b.get(start..end)
    }
    fn u16(&self, off: u64) -> Option<u16> {
        let a: [u8; 2] = self.bytes(off, 2)?.try_into().ok()?;
        Some(if self.be { u16::from_be_bytes(a) } else { u16::from_le_bytes(a) })
    }
    fn u32(&self, off: u64) -> Option<u32> {
        let a: [u8; 4] = self.bytes(off, 4)?.try_into().ok()?;
        Some(if self.be { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    }
    fn u64(&self, off: u64) -> Option<u64> {
        let a: [u8; 8] = self.bytes(off, 8)?.try_into().ok()?;
        Some(if self.be { u64::from_be_bytes(a) } else { u64::from_le_bytes(a) })
    }
}

/// A NUL-terminated string at the start of `b` (all of `b` if it has no NUL).
fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl Ko {
    /// Parses the bytes of a module file; the error says what the file is
    /// instead, in words.
    pub fn parse(b: &[u8]) -> Result<Ko, String> {
        if b.len() < 64 || &b[..4] != b"\x7fELF" {
            return Err("not an ELF file (a kernel module is an ELF relocatable object)".into());
        }
        if b[4] != 2 {
            return Err("a 32-bit ELF file; the kernels klpt runs are 64-bit".into());
        }
        let be = match b[5] {
            1 => false,
            2 => true,
            x => return Err(format!("an ELF file of unknown byte order ({x})")),
        };
        let e = Elf { b, be };
        let broken = || "a truncated or corrupt ELF file".to_string();
        let e_type = e.u16(16).ok_or_else(broken)?;
        if e_type != ET_REL {
            let what = match e_type {
                2 => "an executable",
                3 => "a shared object or position-independent executable",
                4 => "a core dump",
                _ => "not a relocatable object",
            };
            return Err(format!("an ELF file, but {what}, not a kernel module (a relocatable object, `ET_REL`)"));
        }
        let machine = e.u16(18).ok_or_else(broken)?;
        let shoff = e.u64(0x28).ok_or_else(broken)?;
        let shentsize = u64::from(e.u16(0x3a).ok_or_else(broken)?);
        let mut shnum = u64::from(e.u16(0x3c).ok_or_else(broken)?);
        let mut shstrndx = u64::from(e.u16(0x3e).ok_or_else(broken)?);
        if shentsize < 64 {
            return Err(broken());
        }
        // More than 0xff00 sections: the real numbers are in section 0.
        if shnum == 0 && shoff != 0 {
            shnum = e.u64(shoff + 32).ok_or_else(broken)?;
        }
        if shstrndx == 0xffff {
            shstrndx = u64::from(e.u32(shoff + 40).ok_or_else(broken)?);
        }
        let sections: Vec<(u32, u32, u64, u64)> = (0..shnum)
            .map(|i| {
                let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
                Some((e.u32(h)?, e.u32(h + 4)?, e.u64(h + 24)?, e.u64(h + 32)?))
            })
            .collect::<Option<_>>()
            .ok_or_else(broken)?;
        let &(_, _, stroff, strsize) =
            sections.get(usize::try_from(shstrndx).map_err(|_| broken())?).ok_or_else(broken)?;
        let names = e.bytes(stroff, strsize).ok_or_else(broken)?;
        let section = |want: &str| -> Result<Option<&[u8]>, String> {
            for &(name, ty, off, size) in &sections {
                let n = names.get(name as usize..).map(c_string);
                if n.as_deref() == Some(want) {
                    return if ty == SHT_NOBITS {
                        Ok(Some(&[][..]))
                    } else {
                        e.bytes(off, size).map(Some).ok_or_else(broken)
                    };
                }
            }
            Ok(None)
        };
        let modinfo = section(".modinfo")?
            .ok_or("an ELF relocatable object without a `.modinfo` section: not a kernel module (Kbuild adds it to every module)")?
            .split(|&c| c == 0)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let s = String::from_utf8_lossy(s);
                match s.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (s.to_string(), String::new()),
                }
            })
            .collect();
        let this_module = section(".gnu.linkonce.this_module")?
            .and_then(|s| s.get(THIS_MODULE_NAME_OFFSET..THIS_MODULE_NAME_OFFSET + MODULE_NAME_LEN))
            .map(c_string)
            .filter(|n| !n.is_empty());
        // `struct modversion_info { unsigned long crc; char name[MODULE_NAME_LEN]; }`;
        // the CRC is 32 bits, stored in an unsigned long.
        let versions = section("__versions")?
            .map(|v| {
                v.chunks_exact(8 + MODULE_NAME_LEN)
                    .map(|c| {
                        let e = Elf { b: c, be };
                        (e.u64(0).unwrap_or(0) as u32, c_string(&c[8..]))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Ko { machine, big_endian: be, modinfo, this_module, versions })
    }

    /// The first `.modinfo` value of `key`.
    pub fn info(&self, key: &str) -> Option<&str> {
        self.modinfo.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The module's name as the kernel takes it: `.modinfo`'s `name=`, else
    /// (modules built before modpost wrote it) the `struct module`'s name.
    pub fn name(&self) -> Option<&str> {
        self.info("name").or(self.this_module.as_deref())
    }

    /// Whether the module says it is a livepatch (`MODULE_INFO(livepatch, "Y")`):
    /// the kernel refuses `klp_enable_patch()` from a module without it.
    pub fn is_livepatch(&self) -> bool {
        self.info("livepatch") == Some("Y")
    }

    /// Module parameters from `parmtype=NAME:TYPE` (one per `module_param`).
    pub fn params(&self) -> Vec<(String, String)> {
        self.modinfo
            .iter()
            .filter(|(k, _)| k == "parmtype")
            .filter_map(|(_, v)| v.split_once(':'))
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    /// The kernel-independent checks of a module a case names `name`:
    /// `Err((what is wrong, how to fix it))`.
    pub fn check_identity(&self, name: &str, livepatch: bool) -> Result<(), (String, String)> {
        match self.name() {
            None => {
                return Err((
                    "the module has no name (no `name=` in `.modinfo`, no `.gnu.linkonce.this_module`)".into(),
                    "build it with the kernel's Kbuild (`make -C <kernel build tree> M=<dir>`), which names it".into(),
                ))
            }
            Some(n) if n != name => {
                return Err((
                    format!("the module is named `{n}`, not `{name}`"),
                    format!(
                        "write `name: {n}` (the kernel knows a module by the name built into it, not by its file name)"
                    ),
                ))
            }
            Some(_) => {}
        }
        match (livepatch, self.is_livepatch()) {
            (true, false) => Err((
                format!("module `{name}` is not a livepatch: its `.modinfo` lacks `livepatch=Y`"),
                "list plain modules under `targets:`; a livepatch module declares MODULE_INFO(livepatch, \"Y\")".into(),
            )),
            (false, true) => Err((
                format!("module `{name}` is a livepatch (`livepatch=Y` in its `.modinfo`)"),
                "list it under `livepatches:`".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// A minimal ELF64 object of type `e_type` with the given sections (x86_64,
/// or s390x when big-endian), for tests.
#[cfg(test)]
pub(crate) fn test_elf(be: bool, e_type: u16, sections: &[(&str, &[u8])]) -> Vec<u8> {
    let p16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let p32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let p64 = |v: u64| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut names = vec![0u8];
    let mut offs = Vec::new();
    for (n, _) in sections.iter().chain([(".shstrtab", &[][..])].iter()) {
        offs.push(names.len() as u32);
        names.extend(n.as_bytes());
        names.push(0);
    }
    let mut b = vec![0u8; 64];
    let mut data_at = Vec::new();
    for (_, d) in sections {
        data_at.push(b.len() as u64);
        b.extend(*d);
    }
    let names_at = b.len() as u64;
    b.extend(&names);
    while !b.len().is_multiple_of(8) {
        b.push(0);
    }
    let shoff = b.len() as u64;
    b.extend([0u8; 64]);
    let mut hdr = |name: u32, off: u64, size: u64| {
        let mut h = [0u8; 64];
        h[..4].copy_from_slice(&p32(name));
        h[4..8].copy_from_slice(&p32(1));
        h[24..32].copy_from_slice(&p64(off));
        h[32..40].copy_from_slice(&p64(size));
        b.extend(h);
    };
    for (i, (_, d)) in sections.iter().enumerate() {
        hdr(offs[i], data_at[i], d.len() as u64);
    }
    hdr(offs[sections.len()], names_at, names.len() as u64);
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = if be { 2 } else { 1 };
    b[6] = 1;
    b[16..18].copy_from_slice(&p16(e_type));
    b[18..20].copy_from_slice(&p16(if be { 22 } else { 62 }));
    b[0x28..0x30].copy_from_slice(&p64(shoff));
    b[0x3a..0x3c].copy_from_slice(&p16(64));
    // Section 0 is the null header; `.shstrtab` comes last.
    b[0x3c..0x3e].copy_from_slice(&p16(sections.len() as u16 + 2));
    b[0x3e..0x40].copy_from_slice(&p16(sections.len() as u16 + 1));
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_name_livepatch_params() {
        for be in [false, true] {
            let info =
                b"license=GPL\0livepatch=Y\0parmtype=replace:bool\0vermagic=6.1.0 SMP mod_unload \0name=klpt_x\0";
            let ko = Ko::parse(&test_elf(be, ET_REL, &[(".text", b"\x90"), (".modinfo", info)])).unwrap();
            assert_eq!(ko.big_endian, be);
            assert_eq!(ko.name(), Some("klpt_x"));
            assert!(ko.is_livepatch());
            assert_eq!(ko.info("vermagic"), Some("6.1.0 SMP mod_unload "));
            assert_eq!(ko.params(), vec![("replace".to_string(), "bool".to_string())]);
            assert!(ko.check_identity("klpt_x", true).is_ok());
            let (msg, hint) = ko.check_identity("klpt_y", true).unwrap_err();
            assert!(msg.contains("named `klpt_x`, not `klpt_y`") && hint.contains("name: klpt_x"), "{msg} / {hint}");
            assert!(ko.check_identity("klpt_x", false).unwrap_err().0.contains("is a livepatch"));
        }
    }

    #[test]
    fn name_from_this_module_and_versions() {
        let mut this = vec![0u8; 24];
        this.extend(b"klpt_old\0");
        this.resize(24 + 56 + 100, 0);
        let mut versions = Vec::new();
        versions.extend(0x1234_5678u64.to_le_bytes());
        let mut n = b"module_layout".to_vec();
        n.resize(56, 0);
        versions.extend(n);
        let ko = Ko::parse(&test_elf(
            false,
            ET_REL,
            &[(".modinfo", b"license=GPL\0"), (".gnu.linkonce.this_module", &this), ("__versions", &versions)],
        ))
        .unwrap();
        assert_eq!(ko.name(), Some("klpt_old"));
        assert!(!ko.is_livepatch());
        assert_eq!(ko.versions, vec![(0x1234_5678, "module_layout".to_string())]);
        assert!(ko.check_identity("klpt_old", true).unwrap_err().0.contains("lacks `livepatch=Y`"));
    }

    #[test]
    fn not_modules() {
        assert!(Ko::parse(b"#!/bin/sh\n").unwrap_err().contains("not an ELF file"));
        assert!(Ko::parse(&test_elf(false, 3, &[(".modinfo", b"name=x\0")])).unwrap_err().contains("shared object"));
        assert!(Ko::parse(&test_elf(false, ET_REL, &[(".text", b"")])).unwrap_err().contains("without a `.modinfo`"));
        let mut b = test_elf(false, ET_REL, &[(".modinfo", b"name=x\0")]);
        b.truncate(b.len() - 40);
        assert!(Ko::parse(&b).unwrap_err().contains("truncated"));
        let mut b = test_elf(false, ET_REL, &[(".modinfo", b"name=x\0")]);
        b[4] = 1;
        assert!(Ko::parse(&b).unwrap_err().contains("32-bit"));
    }
}

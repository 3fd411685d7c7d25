//! ELF analysis of cross-compiled firmware with the `object` crate: what lands in flash and in
//! RAM, section by section and symbol by symbol.
//!
//! Definitions (the same as `arm-none-eabi-size -B`'s `text + data` and `data + bss` for a
//! firmware image linked by `nas verify`):
//! - **flash**: allocated sections with contents (not `SHT_NOBITS`) whose *load* address lies in
//!   the flash region. The load address (LMA) comes from the `PT_LOAD` program header that holds
//!   the section: `p_paddr + (sh_addr − p_vaddr)`. `.data` runs in RAM but its initial image is
//!   stored in flash, so it counts here too.
//! - **RAM**: allocated sections whose *run* address (`sh_addr`) lies in the RAM region:
//!   `.data`, `.bss` and the linker script's `.stack` reservation.

use anyhow::{bail, Context, Result};
use object::read::elf::{ElfFile32, FileHeader, ProgramHeader, SectionHeader, Sym};
use object::{elf, Endianness, Object, ObjectSymbol, SymbolKind};
use serde::Serialize;
use std::collections::BTreeSet;

/// A memory region of the target: `[origin, origin + length)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Region {
    pub origin: u64,
    pub length: u64,
}

impl Region {
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.origin && addr - self.origin < self.length
    }
}

/// One allocated section of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    pub name: String,
    /// Run address (`sh_addr`).
    pub vma: u64,
    /// Load address, from the program headers (equal to `vma` for sections not loaded).
    pub lma: u64,
    pub size: u64,
    /// `SHT_NOBITS`: occupies memory at run time but nothing in the file (`.bss`, `.stack`).
    pub nobits: bool,
    /// Counted in flash (contents loaded into the flash region).
    pub in_flash: bool,
    /// Counted in RAM (run address in the RAM region).
    pub in_ram: bool,
}

/// Whether a symbol names code or data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SymbolType {
    Function,
    Object,
}

/// A defined function or data symbol with a size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Symbol {
    pub name: String,
    /// Address with the Thumb bit cleared.
    pub addr: u64,
    pub size: u64,
    #[serde(rename = "type")]
    pub kind: SymbolType,
    /// The output section it lives in.
    pub section: String,
    /// Local (`static`) symbol.
    pub local: bool,
}

/// What an ELF image occupies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ElfImage {
    pub flash: Region,
    pub ram: Region,
    /// Allocated sections of non-zero size, in address order.
    pub sections: Vec<Section>,
    /// Function and data symbols of non-zero size.
    #[serde(skip)]
    pub symbols: Vec<Symbol>,
    pub flash_bytes: u64,
    pub ram_bytes: u64,
}

impl ElfImage {
    /// Read a 32-bit little-endian ELF executable (any other kind is an error).
    pub fn parse(data: &[u8], flash: Region, ram: Region) -> Result<ElfImage> {
        let file = ElfFile32::<Endianness>::parse(data).context("not a 32-bit ELF file")?;
        let endian = file.endian();
        let header = file.elf_header();
        if header.e_type(endian) != elf::ET_EXEC {
            bail!(
                "not an executable ELF image (e_type {})",
                header.e_type(endian)
            );
        }
        let sections = sections(&file, flash, ram)?;
        let symbols = symbols(&file)?;
        let flash_bytes = sections.iter().filter(|s| s.in_flash).map(|s| s.size).sum();
        let ram_bytes = sections.iter().filter(|s| s.in_ram).map(|s| s.size).sum();
        Ok(ElfImage {
            flash,
            ram,
            sections,
            symbols,
            flash_bytes,
            ram_bytes,
        })
    }

    /// The size of an output section (0 when absent).
    pub fn section_size(&self, name: &str) -> u64 {
        self.sections
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.size)
            .sum()
    }

    /// Flash taken by the named sections.
    pub fn flash_of(&self, names: &[&str]) -> u64 {
        self.sections
            .iter()
            .filter(|s| s.in_flash && names.contains(&s.name.as_str()))
            .map(|s| s.size)
            .sum()
    }

    /// RAM taken by the named sections.
    pub fn ram_of(&self, names: &[&str]) -> u64 {
        self.sections
            .iter()
            .filter(|s| s.in_ram && names.contains(&s.name.as_str()))
            .map(|s| s.size)
            .sum()
    }

    /// A symbol by name.
    pub fn symbol(&self, name: &str) -> Option<&Symbol> {
        self.symbols.iter().find(|s| s.name == name)
    }

    /// Whether a symbol lies in flash (by the section it is in).
    pub fn symbol_in_flash(&self, sym: &Symbol) -> bool {
        self.sections
            .iter()
            .any(|s| s.in_flash && s.name == sym.section)
    }

    /// Whether a symbol lies in RAM (by the section it is in).
    pub fn symbol_in_ram(&self, sym: &Symbol) -> bool {
        self.sections
            .iter()
            .any(|s| s.in_ram && s.name == sym.section)
    }
}

/// The allocated sections of non-zero size, in address order, placed in flash and RAM.
fn sections(file: &ElfFile32<Endianness>, flash: Region, ram: Region) -> Result<Vec<Section>> {
    let endian = file.endian();
    let loads: Vec<_> = file
        .elf_program_headers()
        .iter()
        .filter(|p| p.p_type(endian) == elf::PT_LOAD)
        .collect();
    let table = file.elf_section_table();
    let mut sections = Vec::new();
    for sh in table.iter() {
        let flags = sh.sh_flags(endian);
        let size = u64::from(sh.sh_size(endian));
        if flags & elf::SHF_ALLOC == 0 || size == 0 {
            continue;
        }
        let name = String::from_utf8_lossy(table.section_name(endian, sh)?).into_owned();
        let vma = u64::from(sh.sh_addr(endian));
        let nobits = sh.sh_type(endian) == elf::SHT_NOBITS;
        let offset = u64::from(sh.sh_offset(endian));
        let lma = if nobits {
            vma
        } else {
            load_address(&loads, endian, offset, vma, size)
                .with_context(|| format!("section {name} is in no PT_LOAD segment"))?
        };
        sections.push(Section {
            in_flash: !nobits && flash.contains(lma),
            in_ram: ram.contains(vma),
            name,
            vma,
            lma,
            size,
            nobits,
        });
    }
    sections.sort_by_key(|s| (s.vma, s.name.clone()));
    Ok(sections)
}

/// The load address of the section of `size` bytes at file `offset` and run address `vma`:
/// the PT_LOAD segment whose file image holds the section gives it.
fn load_address(
    loads: &[&elf::ProgramHeader32<Endianness>],
    endian: Endianness,
    offset: u64,
    vma: u64,
    size: u64,
) -> Option<u64> {
    loads
        .iter()
        .find(|p| {
            let (off, filesz) = (u64::from(p.p_offset(endian)), u64::from(p.p_filesz(endian)));
            let (va, memsz) = (u64::from(p.p_vaddr(endian)), u64::from(p.p_memsz(endian)));
            offset >= off && offset + size <= off + filesz && vma >= va && vma + size <= va + memsz
        })
        .map(|p| u64::from(p.p_paddr(endian)) + (vma - u64::from(p.p_vaddr(endian))))
}

/// The defined function and data symbols of non-zero size, in address order.
fn symbols(file: &ElfFile32<Endianness>) -> Result<Vec<Symbol>> {
    let endian = file.endian();
    let table = file.elf_section_table();
    let symtab = file.elf_symbol_table();
    let mut symbols = Vec::new();
    for sym in symtab.iter() {
        let kind = match sym.st_type() {
            elf::STT_FUNC => SymbolType::Function,
            elf::STT_OBJECT => SymbolType::Object,
            _ => continue,
        };
        let size = u64::from(sym.st_size(endian));
        let shndx = sym.st_shndx(endian);
        if size == 0 || shndx == elf::SHN_UNDEF || shndx >= elf::SHN_LORESERVE {
            continue;
        }
        let section = table
            .section(object::SectionIndex(shndx as usize))
            .ok()
            .and_then(|sh| table.section_name(endian, sh).ok())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        let mut addr = u64::from(sym.st_value(endian));
        if kind == SymbolType::Function {
            addr &= !1;
        }
        symbols.push(Symbol {
            name: String::from_utf8_lossy(symtab.symbol_name(endian, sym)?).into_owned(),
            addr,
            size,
            kind,
            section,
            local: sym.st_bind() == elf::STB_LOCAL,
        });
    }
    symbols.sort_by(|a, b| (a.addr, &a.name).cmp(&(b.addr, &b.name)));
    Ok(symbols)
}

/// Names of the function and data symbols an object file (`.o`) defines, local ones included.
pub fn defined_symbols(object_file: &[u8]) -> Result<BTreeSet<String>> {
    let file = object::File::parse(object_file).context("not an object file")?;
    let mut names = BTreeSet::new();
    for sym in file.symbols() {
        if sym.is_definition() && matches!(sym.kind(), SymbolKind::Text | SymbolKind::Data) {
            names.insert(sym.name()?.to_string());
        }
    }
    Ok(names)
}

/// One member of a static library (`.a`) and the function and data symbols it defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveMember {
    pub name: String,
    pub symbols: BTreeSet<String>,
}

/// The members of a static library (a Rust `staticlib`, say) with the symbols each defines.
/// Members that are not object files (Rust's `lib.rmeta`) are left out.
pub fn archive_members(archive: &[u8]) -> Result<Vec<ArchiveMember>> {
    let file = object::read::archive::ArchiveFile::parse(archive).context("not an archive")?;
    let mut members = Vec::new();
    for m in file.members() {
        let m = m.context("malformed archive member")?;
        let name = String::from_utf8_lossy(m.name()).into_owned();
        let data = m.data(archive).context("malformed archive member")?;
        if object::File::parse(data).is_err() {
            continue;
        }
        members.push(ArchiveMember {
            symbols: defined_symbols(data).with_context(|| format!("archive member {name}"))?,
            name,
        });
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_bounds() {
        let r = Region {
            origin: 0x0800_0000,
            length: 0x100,
        };
        assert!(r.contains(0x0800_0000) && r.contains(0x0800_00ff));
        assert!(!r.contains(0x0800_0100) && !r.contains(0x07ff_ffff));
    }

    #[test]
    fn garbage_is_an_error() {
        let r = Region {
            origin: 0,
            length: 1,
        };
        assert!(ElfImage::parse(b"not an elf", r, r).is_err());
        assert!(defined_symbols(b"\x7fELF").is_err());
        assert!(archive_members(b"!<arch>\nshort").is_err());
    }
}

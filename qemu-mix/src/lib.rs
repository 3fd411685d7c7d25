//! A QEMU TCG plugin (plugin API version 1, QEMU 7.2 and later) that records the executed
//! instruction stream of the code between two points, for `nas verify`'s cycle estimate.
//!
//! Arguments (`-plugin libnas_qemu_mix.so,out=FILE,on=ADDR,off=LO-HI:LO-HI,skip=LO-HI,
//! flash=LO-HI,ram=LO-HI,line=BYTES,lines=N`, addresses in hex):
//! - counting starts whenever the instruction at `on` executes (the kernel's entry: one
//!   inference each time) and stops at the first instruction inside an `off` range (the
//!   harness functions the kernel returns to); instructions inside a `skip` range (the rest of
//!   the harness: the timer's interrupt handler) are never counted, and counting resumes after
//!   them;
//! - `flash` and `ram` are the image's regions: each load and store is counted by region;
//! - `max`: stop after this many inferences (0: count to the end of the run): the file is
//!   written then and the plugin removes its callbacks;
//! - `line`/`lines`: a fully associative LRU cache of `lines` lines of `line` bytes in front
//!   of flash data reads (ST's ART accelerator, a Cortex-M7 D-cache); its misses are counted
//!   (`lines=0`: every flash read is a miss).
//!
//! At exit it writes `FILE`: a header line `inferences N`, then one line per executed
//! instruction: `addr size count sequential taken flash_reads flash_writes ram_reads
//! ram_writes other_reads other_writes flash_misses ; disassembly`, where `sequential` counts
//! the executions entered from the instruction just before it in memory and `taken` those
//! after which the next executed instruction was not the next one in memory. Classifying
//! instructions and turning counts into cycles is `nas`'s work (`nas::emulate::mix`).
//!
//! The plugin API is C; its handful of functions used here are declared below as the
//! `qemu-plugin.h` of QEMU 7.2 defines them.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::Mutex;

type PluginId = u64;

#[repr(C)]
struct Tb {
    _private: [u8; 0],
}
#[repr(C)]
struct Insn {
    _private: [u8; 0],
}

type TbTransCb = extern "C" fn(id: PluginId, tb: *mut Tb);
type InsnExecCb = extern "C" fn(vcpu: c_uint, userdata: *mut c_void);
type MemCb = extern "C" fn(vcpu: c_uint, info: u32, vaddr: u64, userdata: *mut c_void);
type AtExitCb = extern "C" fn(id: PluginId, userdata: *mut c_void);
type SimpleCb = extern "C" fn(id: PluginId);

/// `QEMU_PLUGIN_CB_NO_REGS`.
const CB_NO_REGS: c_int = 0;
/// `QEMU_PLUGIN_MEM_RW`.
const MEM_RW: c_int = 3;

extern "C" {
    fn qemu_plugin_register_vcpu_tb_trans_cb(id: PluginId, cb: TbTransCb);
    fn qemu_plugin_tb_n_insns(tb: *const Tb) -> usize;
    fn qemu_plugin_tb_get_insn(tb: *const Tb, idx: usize) -> *mut Insn;
    fn qemu_plugin_insn_vaddr(insn: *const Insn) -> u64;
    fn qemu_plugin_insn_size(insn: *const Insn) -> usize;
    fn qemu_plugin_insn_disas(insn: *const Insn) -> *mut c_char;
    fn qemu_plugin_register_vcpu_insn_exec_cb(
        insn: *mut Insn,
        cb: InsnExecCb,
        flags: c_int,
        userdata: *mut c_void,
    );
    fn qemu_plugin_register_vcpu_mem_cb(
        insn: *mut Insn,
        cb: MemCb,
        flags: c_int,
        rw: c_int,
        userdata: *mut c_void,
    );
    fn qemu_plugin_mem_is_store(info: u32) -> bool;
    fn qemu_plugin_register_atexit_cb(id: PluginId, cb: AtExitCb, userdata: *mut c_void);
    fn qemu_plugin_outs(s: *const c_char);
    fn qemu_plugin_reset(id: PluginId, cb: SimpleCb);
}

/// The API version this plugin is written against.
#[no_mangle]
pub static qemu_plugin_version: c_int = 1;

#[derive(Default, Clone)]
struct Record {
    addr: u64,
    size: u64,
    disas: String,
    count: u64,
    sequential: u64,
    taken: u64,
    /// flash r/w, ram r/w, other r/w.
    mem: [u64; 6],
    flash_misses: u64,
}

#[derive(Default)]
struct State {
    id: PluginId,
    out: String,
    /// Inferences to count; when the last ends the file is written and the plugin's callbacks
    /// removed, so the rest of the run goes at QEMU's full speed.
    max: u64,
    written: bool,
    on: u64,
    off: Vec<(u64, u64)>,
    skip: Vec<(u64, u64)>,
    flash: (u64, u64),
    ram: (u64, u64),
    line: u64,
    lines: usize,
    records: Vec<Record>,
    by_addr: HashMap<u64, usize>,
    counting: bool,
    inferences: u64,
    /// The previously executed instruction while counting.
    prev: Option<usize>,
    /// The cache's lines, most recently used last.
    cache: Vec<u64>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    let mut g = STATE.lock().ok()?;
    g.as_mut().map(f)
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

fn range(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once('-')?;
    Some((hex(a)?, hex(b)?))
}

fn inside(r: (u64, u64), a: u64) -> bool {
    a >= r.0 && a < r.1
}

extern "C" fn on_exec(_vcpu: c_uint, userdata: *mut c_void) {
    let i = userdata as usize;
    with_state(|s| {
        let addr = s.records[i].addr;
        if addr == s.on {
            s.counting = true;
            s.inferences += 1;
            s.prev = None;
        } else if s.counting && s.off.iter().any(|&r| inside(r, addr)) {
            s.counting = false;
            if let Some(p) = s.prev.take() {
                s.records[p].taken += 1;
            }
            if s.max > 0 && s.inferences >= s.max && !s.written {
                write_out(s);
                // SAFETY: the id QEMU installed this plugin with.
                unsafe { qemu_plugin_reset(s.id, on_reset) };
            }
        }
        if !s.counting || s.skip.iter().any(|&r| inside(r, addr)) {
            return;
        }
        if let Some(p) = s.prev {
            let (pa, ps) = (s.records[p].addr, s.records[p].size);
            if pa + ps == addr {
                s.records[i].sequential += 1;
            } else {
                s.records[p].taken += 1;
            }
        }
        s.records[i].count += 1;
        s.prev = Some(i);
    });
}

extern "C" fn on_mem(_vcpu: c_uint, info: u32, vaddr: u64, userdata: *mut c_void) {
    let i = userdata as usize;
    // SAFETY: `info` is the meminfo QEMU passed to this callback.
    let store = unsafe { qemu_plugin_mem_is_store(info) };
    with_state(|s| {
        let addr = s.records[i].addr;
        if !s.counting || s.skip.iter().any(|&r| inside(r, addr)) {
            return;
        }
        let region = if inside(s.flash, vaddr) {
            0
        } else if inside(s.ram, vaddr) {
            2
        } else {
            4
        };
        s.records[i].mem[region + usize::from(store)] += 1;
        if region == 0 && !store {
            let line = vaddr / s.line.max(1);
            match s.cache.iter().position(|&l| l == line) {
                Some(k) => {
                    let l = s.cache.remove(k);
                    s.cache.push(l);
                }
                None => {
                    s.records[i].flash_misses += 1;
                    if s.lines > 0 {
                        if s.cache.len() == s.lines {
                            s.cache.remove(0);
                        }
                        s.cache.push(line);
                    }
                }
            }
        }
    });
}

extern "C" fn on_translate(_id: PluginId, tb: *mut Tb) {
    // SAFETY: `tb` is the block QEMU is translating; its instructions are valid during this
    // callback, and the callbacks registered on them are what the API is for.
    unsafe {
        for k in 0..qemu_plugin_tb_n_insns(tb) {
            let insn = qemu_plugin_tb_get_insn(tb, k);
            let addr = qemu_plugin_insn_vaddr(insn);
            let size = qemu_plugin_insn_size(insn) as u64;
            let index = with_state(|s| {
                if let Some(&i) = s.by_addr.get(&addr) {
                    return i;
                }
                s.records.push(Record {
                    addr,
                    size,
                    ..Record::default()
                });
                s.by_addr.insert(addr, s.records.len() - 1);
                s.records.len() - 1
            });
            let Some(index) = index else { return };
            let d = qemu_plugin_insn_disas(insn);
            if !d.is_null() {
                let text = CStr::from_ptr(d).to_string_lossy().into_owned();
                with_state(|s| s.records[index].disas = text);
                libc_free(d as *mut c_void);
            }
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_exec, CB_NO_REGS, index as *mut c_void);
            qemu_plugin_register_vcpu_mem_cb(
                insn,
                on_mem,
                CB_NO_REGS,
                MEM_RW,
                index as *mut c_void,
            );
        }
    }
}

extern "C" {
    #[link_name = "free"]
    fn libc_free(p: *mut c_void);
}

extern "C" fn on_reset(_id: PluginId) {}

extern "C" fn on_exit(_id: PluginId, _userdata: *mut c_void) {
    with_state(|s| {
        if !s.written {
            write_out(s);
        }
    });
}

/// Write the counts to the output file (once).
fn write_out(s: &mut State) {
    s.written = true;
    let text = {
        let mut t = format!("inferences {}\n", s.inferences);
        for r in s.records.iter().filter(|r| r.count > 0) {
            let m = r.mem;
            t.push_str(&format!(
                "{:x} {} {} {} {} {} {} {} {} {} {} {} ; {}\n",
                r.addr,
                r.size,
                r.count,
                r.sequential,
                r.taken,
                m[0],
                m[1],
                m[2],
                m[3],
                m[4],
                m[5],
                r.flash_misses,
                r.disas.replace('\n', " ")
            ));
        }
        (s.out.clone(), t)
    };
    if let Err(e) = std::fs::write(&text.0, text.1) {
        let msg = format!("nas-qemu-mix: cannot write {}: {e}\n\0", text.0);
        // SAFETY: a NUL-terminated string.
        unsafe { qemu_plugin_outs(msg.as_ptr() as *const c_char) };
    }
}

/// # Safety
/// Called by QEMU with `argc` valid C strings in `argv`.
#[no_mangle]
pub unsafe extern "C" fn qemu_plugin_install(
    id: PluginId,
    _info: *const c_void,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    let mut s = State {
        id,
        line: 16,
        lines: 8,
        ..State::default()
    };
    for k in 0..argc.max(0) as usize {
        let arg = CStr::from_ptr(*argv.add(k)).to_string_lossy().into_owned();
        let Some((key, value)) = arg.split_once('=') else {
            return -1;
        };
        let ok = match key {
            "out" => {
                s.out = value.to_string();
                true
            }
            "on" => hex(value).map(|v| s.on = v).is_some(),
            "off" | "skip" => {
                let v = value.split(':').map(range).collect::<Option<Vec<_>>>();
                match (key, v) {
                    ("off", Some(v)) => s.off = v,
                    (_, Some(v)) => s.skip = v,
                    (_, None) => return -1,
                }
                true
            }
            "flash" => range(value).map(|v| s.flash = v).is_some(),
            "ram" => range(value).map(|v| s.ram = v).is_some(),
            "line" => value.parse().map(|v| s.line = v).is_ok(),
            "max" => value.parse().map(|v| s.max = v).is_ok(),
            "lines" => value.parse().map(|v| s.lines = v).is_ok(),
            _ => false,
        };
        if !ok {
            return -1;
        }
    }
    if s.out.is_empty() {
        return -1;
    }
    if let Ok(mut g) = STATE.lock() {
        *g = Some(s);
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit, std::ptr::null_mut());
    0
}

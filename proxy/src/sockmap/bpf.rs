//! The bpf(2) calls the offload needs, through libc: two SOCKHASH maps, one
//! SK_SKB stream-verdict program, its attachment, and element updates.
//!
//! Why raw syscalls and not aya: aya loads ELF objects built by clang or
//! bpf-linker (nightly); the program here is fifteen instructions, so
//! assembling them in Rust and making five syscalls is smaller than any
//! loader and needs no BPF toolchain at build time.
//!
//! The program (attached to the `verdict` map, redirecting through the
//! `peers` map — see the module docs of `sockmap` for why two maps):
//!
//! ```text
//! r2 = *(u32 *)(r1 + 0)            ; skb->len
//! if r2 != 0 goto +2
//! r0 = SK_DROP                     ; an empty skb (a bare FIN): nothing to move
//! exit
//! r6 = r1                          ; skb
//! call bpf_get_socket_cookie       ; r0 = cookie of the receiving socket
//! *(u64 *)(r10 - 8) = r0           ; key on the stack
//! r1 = r6
//! r2 = <peers map fd>              ; ld_imm64, BPF_PSEUDO_MAP_FD
//! r3 = r10
//! r3 += -8
//! r4 = 0                           ; flags: egress of the target socket
//! call bpf_sk_redirect_hash        ; SK_PASS (redirected) or SK_DROP
//! exit
//! ```
//!
//! Why empty skbs are dropped, not redirected: the FIN's skb carries no
//! bytes, and the psock backlog treats a zero-byte send to the target as a
//! hard error — it sets EPIPE on the target socket and stops all later
//! redirects to it (seen on 6.18). The FIN itself is already processed by
//! TCP; `relay` passes it on after the drain barrier.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// bpf(2) commands, map, program and attach types (include/uapi/linux/bpf.h).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_MAP_TYPE_SOCKHASH: u32 = 18;
const BPF_PROG_TYPE_SK_SKB: u32 = 14;
const BPF_SK_SKB_STREAM_VERDICT: u32 = 5;
/// Update flag: fail if the key exists (a cookie is never reused while its
/// socket lives, so an existing key is a bug we want to see).
const BPF_NOEXIST: u64 = 1;

// Helper ids (the order of __BPF_FUNC_MAPPER).
const FN_GET_SOCKET_COOKIE: i32 = 46;
const FN_SK_REDIRECT_HASH: i32 = 72;

/// One eBPF instruction as the kernel reads it (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst register in the low nibble, src in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

// Opcode parts (include/uapi/linux/bpf_common.h, bpf.h).
const BPF_LD: u8 = 0x00;
const BPF_STX: u8 = 0x03;
const BPF_ALU64: u8 = 0x07;
const BPF_JMP: u8 = 0x05;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_DW: u8 = 0x18;
const BPF_MOV: u8 = 0xb0;
const BPF_ADD: u8 = 0x00;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;
const BPF_PSEUDO_MAP_FD: u8 = 1;

const BPF_LDX: u8 = 0x01;
const BPF_W: u8 = 0x00;
const BPF_JNE: u8 = 0x50;
const SK_DROP: i32 = 0;

/// The verdict program with `peers_fd` as the redirect map.
pub fn verdict_program(peers_fd: RawFd) -> [Insn; 15] {
    [
        insn(BPF_LDX | BPF_MEM | BPF_W, 2, 1, 0, 0),
        insn(BPF_JMP | BPF_JNE | BPF_K, 2, 0, 2, 0),
        insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, SK_DROP),
        insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
        insn(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0),
        insn(BPF_JMP | BPF_CALL, 0, 0, 0, FN_GET_SOCKET_COOKIE),
        insn(BPF_STX | BPF_MEM | BPF_DW, 10, 0, -8, 0),
        insn(BPF_ALU64 | BPF_MOV | BPF_X, 1, 6, 0, 0),
        // 64-bit immediate load: two slots; the kernel swaps the fd for the map.
        insn(BPF_LD | BPF_IMM | BPF_DW, 2, BPF_PSEUDO_MAP_FD, 0, peers_fd),
        insn(0, 0, 0, 0, 0),
        insn(BPF_ALU64 | BPF_MOV | BPF_X, 3, 10, 0, 0),
        insn(BPF_ALU64 | BPF_ADD | BPF_K, 3, 0, 0, -8),
        insn(BPF_ALU64 | BPF_MOV | BPF_K, 4, 0, 0, 0),
        insn(BPF_JMP | BPF_CALL, 0, 0, 0, FN_SK_REDIRECT_HASH),
        insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    ]
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// bpf(2) with `attr` as the command's attribute block. The kernel reads
/// `size_of::<T>()` bytes and treats the rest of its union as zero.
fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised repr(C) struct laid out as the
    // prefix of `union bpf_attr` for `cmd`; the pointers inside it (if any)
    // point to buffers the caller keeps alive for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    // 15 bytes at most: the kernel wants a NUL-terminated name.
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = b;
    }
    out
}

/// A SOCKHASH keyed by socket cookie (u64), values socket fds (u32).
pub fn create_sockhash(name: &str, max_entries: u32) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_SOCKHASH,
        key_size: 8,
        value_size: 4,
        max_entries,
        map_name: name16(name),
        ..Default::default()
    };
    sys_bpf(BPF_MAP_CREATE, &mut attr).map(owned)
}

/// Loads the verdict program; on a verifier refusal the error carries the
/// verifier's log (it names the instruction it disliked).
pub fn load_verdict(peers: &OwnedFd) -> io::Result<OwnedFd> {
    let insns = verdict_program(peers.as_raw_fd());
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SK_SKB,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name16("pw_splice"),
        ..Default::default()
    };
    match sys_bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(owned(fd)),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            if text.trim().is_empty() {
                Err(e)
            } else {
                Err(io::Error::new(
                    e.kind(),
                    format!("{e}; verifier: {}", text.trim()),
                ))
            }
        }
    }
}

/// Attaches `prog` as the stream verdict of every socket put into `map`.
pub fn attach_verdict(map: &OwnedFd, prog: &OwnedFd) -> io::Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: map.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_SK_SKB_STREAM_VERDICT,
        attach_flags: 0,
    };
    sys_bpf(BPF_PROG_ATTACH, &mut attr).map(|_| ())
}

/// `map[key] = socket`. The socket must be an established TCP socket.
pub fn insert(map: &OwnedFd, key: u64, socket: RawFd) -> io::Result<()> {
    let value: u32 = socket as u32;
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u64 as u64,
        value: &value as *const u32 as u64,
        flags: BPF_NOEXIST,
        ..Default::default()
    };
    sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

/// Removes `key`; a key already gone (its socket closed) is fine.
pub fn remove(map: &OwnedFd, key: u64) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u64 as u64,
        ..Default::default()
    };
    match sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r.map(|_| ()),
    }
}

/// Removes `key` and says whether it was there. The tests' probe: a lookup
/// cannot tell, as the kernel refuses every user-space lookup on a map with
/// 4-byte values (ENOSPC) before it looks at the key.
#[cfg(test)]
pub fn take(map: &OwnedFd, key: u64) -> io::Result<bool> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u64 as u64,
        ..Default::default()
    };
    match sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_as_the_kernel_expects() {
        let p = verdict_program(7);
        assert_eq!(size_of::<Insn>(), 8);
        // ldxw r2, [r1+0]; jne r2, 0, +2; mov r0, 0; exit.
        assert_eq!((p[0].code, p[0].regs, p[0].off), (0x61, 0x12, 0));
        assert_eq!(
            (p[1].code, p[1].regs, p[1].off, p[1].imm),
            (0x55, 0x02, 2, 0)
        );
        assert_eq!((p[2].code, p[2].imm), (0xb7, 0));
        assert_eq!(p[3].code, 0x95);
        let p = &p[4..];
        // mov64 r6, r1: opcode 0xbf, dst 6, src 1.
        assert_eq!((p[0].code, p[0].regs), (0xbf, 0x16));
        // call 46 / call 72.
        assert_eq!((p[1].code, p[1].imm), (0x85, 46));
        assert_eq!((p[9].code, p[9].imm), (0x85, 72));
        // stxdw [r10-8], r0.
        assert_eq!((p[2].code, p[2].regs, p[2].off), (0x7b, 0x0a, -8));
        // lddw r2, map fd 7 (src = BPF_PSEUDO_MAP_FD), second slot zero.
        assert_eq!((p[4].code, p[4].regs, p[4].imm), (0x18, 0x12, 7));
        assert_eq!(p[5], insn(0, 0, 0, 0, 0));
        assert_eq!((p[7].code, p[7].regs, p[7].imm), (0x07, 0x03, -8));
        assert_eq!(p[10].code, 0x95);
    }

    #[test]
    fn attribute_blocks_match_the_uapi_offsets() {
        assert_eq!(size_of::<MapCreateAttr>(), 44);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(MapElemAttr, key), 8);
        assert_eq!(std::mem::offset_of!(MapElemAttr, flags), 24);
    }

    #[test]
    fn long_names_are_cut_and_terminated() {
        let n = name16("a-name-much-longer-than-sixteen");
        assert_eq!(n[15], 0);
        assert_eq!(&n[..3], b"a-n");
    }
}

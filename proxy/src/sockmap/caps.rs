//! Giving up the capabilities the loader needed.
//!
//! Creating a SOCKHASH and loading/attaching an SK_SKB program need
//! CAP_BPF and CAP_NET_ADMIN; inserting sockets into the map later does not
//! (the map fd is the authority). So the proxy (UID 1337) can be started
//! with those two as ambient capabilities, load at start-up, and drop them
//! before any other thread exists — capabilities are per thread, and
//! threads inherit them from their creator.

use std::io;

const CAP_NET_ADMIN: u32 = 12;
const CAP_BPF: u32 = 39;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Clears `bits` (bit numbers) from the two-word capability sets.
fn clear(data: &mut [CapData; 2], bits: &[u32]) {
    for &bit in bits {
        let (word, mask) = ((bit / 32) as usize, !(1u32 << (bit % 32)));
        data[word].effective &= mask;
        data[word].permitted &= mask;
        data[word].inheritable &= mask;
    }
}

/// Drops CAP_BPF and CAP_NET_ADMIN from the calling thread (ambient,
/// effective, permitted and inheritable), for good. Call it before
/// spawning threads. Other capabilities are left as they are.
pub fn drop_offload_caps() -> io::Result<()> {
    for cap in [CAP_BPF, CAP_NET_ADMIN] {
        // SAFETY: prctl with integer arguments only. EINVAL means no
        // ambient support (old kernel): nothing to lower then.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_LOWER as libc::c_ulong,
                cap as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
        }
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: v3 capget/capset take a header and two data structs.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    clear(&mut data, &[CAP_BPF, CAP_NET_ADMIN]);
    // SAFETY: as above; lowering capabilities is always permitted.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the calling thread still has `cap` in its effective set.
pub fn has_effective(cap: u32) -> io::Result<bool> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: as in `drop_offload_caps`.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(data[(cap / 32) as usize].effective & (1 << (cap % 32)) != 0)
}

pub const NET_ADMIN: u32 = CAP_NET_ADMIN;
pub const BPF: u32 = CAP_BPF;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clearing_touches_only_the_named_bits() {
        let mut d = [CapData {
            effective: u32::MAX,
            permitted: u32::MAX,
            inheritable: u32::MAX,
        }; 2];
        clear(&mut d, &[CAP_BPF, CAP_NET_ADMIN]);
        assert_eq!(d[0].effective, !(1 << 12));
        assert_eq!(d[0].permitted, !(1 << 12));
        assert_eq!(d[1].effective, !(1 << 7));
        assert_eq!(d[1].inheritable, !(1 << 7));
    }

    #[test]
    fn dropping_in_a_thread_removes_net_admin_there() {
        // A fresh thread: the test runner's other threads keep theirs.
        std::thread::spawn(|| {
            drop_offload_caps().unwrap();
            assert!(!has_effective(CAP_NET_ADMIN).unwrap());
            assert!(!has_effective(CAP_BPF).unwrap());
        })
        .join()
        .unwrap();
    }
}

//! Capability sets: capget/capset and the bounding/ambient prctls.

use nix::errno::Errno;

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The three per-thread capability sets as 64-bit masks (bit N = capability N).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

fn split(v: u64) -> (u32, u32) {
    ((v & 0xffff_ffff) as u32, (v >> 32) as u32)
}

/// `capget(2)` for the calling thread.
pub fn capget() -> nix::Result<CapSets> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array (version 3 layout) are valid for writes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut hdr as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    Errno::result(ret)?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok(CapSets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

/// `capset(2)` for the calling thread.
pub fn capset(sets: CapSets) -> nix::Result<()> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let (e0, e1) = split(sets.effective);
    let (p0, p1) = split(sets.permitted);
    let (i0, i1) = split(sets.inheritable);
    let data = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: header and the two-element data array are valid for the call (read only).
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    Errno::result(ret).map(drop)
}

/// Whether capability `cap` is in the calling thread's bounding set (false for numbers the
/// kernel does not know).
pub fn bounding_has(cap: u32) -> bool {
    // SAFETY: PR_CAPBSET_READ takes the capability number by value.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) };
    ret == 1
}

/// Drops `cap` from the bounding set (needs CAP_SETPCAP).
pub fn bounding_drop(cap: u32) -> nix::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes the capability number by value.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
    Errno::result(ret).map(drop)
}

/// Clears the ambient set.
pub fn ambient_clear_all() -> nix::Result<()> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    Errno::result(ret).map(drop)
}

/// Raises `cap` in the ambient set (it must be permitted and inheritable).
pub fn ambient_raise(cap: u32) -> nix::Result<()> {
    // SAFETY: PR_CAP_AMBIENT_RAISE takes the capability number by value.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            libc::c_ulong::from(cap),
            0,
            0,
        )
    };
    Errno::result(ret).map(drop)
}

/// `prctl(PR_SET_KEEPCAPS)`: keep permitted capabilities across setuid away from 0.
pub fn set_keepcaps(keep: bool) -> nix::Result<()> {
    // SAFETY: PR_SET_KEEPCAPS takes a flag by value.
    let ret = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(keep), 0, 0, 0) };
    Errno::result(ret).map(drop)
}

/// The highest capability number this kernel knows (from /proc/sys/kernel/cap_last_cap).
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

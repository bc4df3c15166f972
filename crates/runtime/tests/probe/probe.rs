//! The in-container probe: a static binary the tests put into a bundle's rootfs. It reports
//! what the container really sees as one JSON object on stdout, or performs one action:
//!   probe                 report
//!   probe alloc MB        allocate and touch MB megabytes, then print "survived"
//!   probe fork N          try to start N children; print how many started
//!   probe write PATH      try to create PATH; print "ok" or the error
//!   probe busy SECS       spin the CPU for SECS seconds
//!   probe syscalls        try keyctl, unshare(CLONE_NEWUSER), mount, bpf, ptrace, personality;
//!                         print a JSON object of their errnos (0 = the call succeeded)
//!   probe reopen-exe PID  get /proc/PID/exe as O_PATH, then reopen it through /proc/self/fd
//!                         and write its first byte back (the CVE-2019-5736 attack, harmless)
//!   probe read PATH       print "ok N" (bytes read) or "error ERRNO"
//! Built by the tests with `rustc -C target-feature=+crt-static` (no dependencies).

use std::fmt::Write as _;
use std::fs;

fn esc(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn read(p: &str) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

fn list(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.map(|s| esc(&s)).collect::<Vec<_>>().join(","))
}

fn report() {
    let status = read("/proc/self/status");
    let mut o = String::from("{");
    let mut kv = |k: &str, v: String| {
        if o.len() > 1 {
            o.push(',');
        }
        let _ = write!(o, "{}:{}", esc(k), v);
    };
    for (k, f) in [
        ("uid", "Uid:"), ("gid", "Gid:"), ("groups", "Groups:"), ("cap_inh", "CapInh:"), ("cap_prm", "CapPrm:"),
        ("cap_eff", "CapEff:"), ("cap_bnd", "CapBnd:"), ("cap_amb", "CapAmb:"), ("no_new_privs", "NoNewPrivs:"),
        ("seccomp", "Seccomp:"), ("umask", "Umask:"), ("ppid", "PPid:"), ("sig_blk", "SigBlk:"),
    ] {
        kv(k, esc(&status_field(&status, f)));
    }
    kv("pid", std::process::id().to_string());
    kv("cwd", esc(&std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default()));
    kv("hostname", esc(read("/proc/sys/kernel/hostname").trim()));
    kv("domainname", esc(read("/proc/sys/kernel/domainname").trim()));
    let mut ns = Vec::new();
    for n in ["pid", "net", "mnt", "uts", "ipc", "user", "cgroup", "time"] {
        let v = fs::read_link(format!("/proc/self/ns/{n}")).map(|p| p.display().to_string()).unwrap_or_default();
        ns.push(format!("{}:{}", esc(n), esc(&v)));
    }
    kv("ns", format!("{{{}}}", ns.join(",")));
    kv("mounts", list(read("/proc/self/mountinfo").lines().map(String::from)));
    kv("limits", list(read("/proc/self/limits").lines().map(String::from)));
    kv("env", list(std::env::vars().map(|(k, v)| format!("{k}={v}"))));
    kv("args", list(std::env::args()));
    kv("cgroup", list(read("/proc/self/cgroup").lines().map(String::from)));
    kv("uid_map", esc(read("/proc/self/uid_map").trim()));
    kv("uptime", esc(read("/proc/uptime").trim()));
    kv("oom_score_adj", esc(read("/proc/self/oom_score_adj").trim()));
    let mut fds: Vec<String> = fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let target = fs::read_link(e.path()).map(|p| p.display().to_string()).unwrap_or_default();
                    format!("{}={}", e.file_name().to_string_lossy(), target)
                })
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    kv("fds", list(fds.into_iter()));
    o.push('}');
    println!("{o}");
}

extern "C" {
    fn syscall(n: i64, ...) -> i64;
    fn __errno_location() -> *mut i32;
}

/// Runs a raw syscall and returns 0 or its errno.
fn errno_of(n: i64, a: [i64; 5]) -> i32 {
    // SAFETY: test probe; every call below passes arguments the kernel validates itself
    // (null or small constant pointers that are only read).
    unsafe {
        *__errno_location() = 0;
        if syscall(n, a[0], a[1], a[2], a[3], a[4]) < 0 { *__errno_location() } else { 0 }
    }
}

fn syscalls() {
    const SYS_PTRACE: i64 = 101;
    const SYS_PERSONALITY: i64 = 135;
    const SYS_MOUNT: i64 = 165;
    const SYS_UNSHARE: i64 = 272;
    const SYS_KEYCTL: i64 = 250;
    const SYS_BPF: i64 = 321;
    const CLONE_NEWUSER: i64 = 0x1000_0000;
    const KEYCTL_JOIN_SESSION_KEYRING: i64 = 1;
    const PTRACE_ATTACH: i64 = 16;
    let none = b"none\0".as_ptr() as i64;
    let tmpfs = b"tmpfs\0".as_ptr() as i64;
    let tmp = b"/tmp\0".as_ptr() as i64;
    let attr = [0u8; 128];
    let r = [
        ("keyctl", errno_of(SYS_KEYCTL, [KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0])),
        ("mount", errno_of(SYS_MOUNT, [none, tmp, tmpfs, 0, 0])),
        // BPF_MAP_CREATE with an all-zero attribute: EINVAL when allowed, EPERM when not.
        ("bpf", errno_of(SYS_BPF, [0, attr.as_ptr() as i64, attr.len() as i64, 0, 0])),
        ("ptrace", errno_of(SYS_PTRACE, [PTRACE_ATTACH, 1, 0, 0, 0])), // never on itself
        // READ_IMPLIES_EXEC | PER_LINUX32: not one of the personalities Docker allows.
        ("personality", errno_of(SYS_PERSONALITY, [0x0040_0008, 0, 0, 0, 0])),
        // Last: once in a new user namespace the process has no capabilities left here.
        ("unshare_user", errno_of(SYS_UNSHARE, [CLONE_NEWUSER, 0, 0, 0, 0])),
    ];
    let body: Vec<String> = r.iter().map(|(k, v)| format!("{}:{v}", esc(k))).collect();
    println!("{{{}}}", body.join(","));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        None => report(),
        Some("alloc") => {
            let mb: usize = args[2].parse().unwrap();
            let mut keep = Vec::new();
            for _ in 0..mb {
                keep.push(vec![1u8; 1 << 20]);
            }
            println!("survived {}", keep.len());
        }
        Some("fork") => {
            let n: usize = args[2].parse().unwrap();
            let mut kids = Vec::new();
            for _ in 0..n {
                match std::process::Command::new("/bin/sleep").arg("5").spawn() {
                    Ok(c) => kids.push(c),
                    Err(_) => break,
                }
            }
            println!("started {}", kids.len());
            for mut k in kids {
                let _ = k.kill();
                let _ = k.wait();
            }
        }
        Some("write") => match fs::write(&args[2], b"x") {
            Ok(()) => println!("ok"),
            Err(e) => println!("error {}", e.raw_os_error().unwrap_or(0)),
        },
        Some("busy") => {
            let secs: u64 = args[2].parse().unwrap();
            let t = std::time::Instant::now();
            let mut x = 0u64;
            while t.elapsed().as_secs() < secs {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            println!("done {}", x % 2);
        }
        Some("syscalls") => syscalls(),
        Some("reopen-exe") => {
            use std::os::unix::fs::OpenOptionsExt;
            use std::os::fd::AsRawFd;
            const O_PATH: i32 = 0o10_000_000;
            let f = match fs::OpenOptions::new().read(true).custom_flags(O_PATH).open(format!("/proc/{}/exe", args[2])) {
                Ok(f) => f,
                Err(e) => {
                    println!("error {}", e.raw_os_error().unwrap_or(0));
                    return;
                }
            };
            // Write back the byte that is already there: harmless even if the protection failed.
            let r = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(format!("/proc/self/fd/{}", f.as_raw_fd()))
                .and_then(|w| {
                    use std::os::unix::fs::FileExt;
                    let mut b = [0u8; 1];
                    w.read_exact_at(&mut b, 0)?;
                    w.write_all_at(&b, 0)
                });
            match r {
                Ok(()) => println!("written"),
                Err(e) => println!("error {}", e.raw_os_error().unwrap_or(0)),
            }
        }
        Some("read") => match fs::read(&args[2]) {
            Ok(b) => println!("ok {}", b.len()),
            Err(e) => println!("error {}", e.raw_os_error().unwrap_or(0)),
        },
        Some(other) => {
            eprintln!("probe: unknown mode {other}");
            std::process::exit(2);
        }
    }
}

//! The in-container probe: a static binary the tests put into a bundle's rootfs. It reports
//! what the container really sees as one JSON object on stdout, or performs one action:
//!   probe                 report
//!   probe alloc MB        allocate and touch MB megabytes, then print "survived"
//!   probe fork N          try to start N children; print how many started
//!   probe write PATH      try to create PATH; print "ok" or the error
//!   probe busy SECS       spin the CPU for SECS seconds
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
        ("seccomp", "Seccomp:"), ("umask", "Umask:"), ("ppid", "PPid:"),
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
        Some(other) => {
            eprintln!("probe: unknown mode {other}");
            std::process::exit(2);
        }
    }
}

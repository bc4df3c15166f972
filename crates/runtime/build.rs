//! Records the git commit for `--version` (dockerd parses the "commit:" line), and links the
//! release skiff-runtime statically.
//!
//! Why static: the runtime is exec'd several times per container (create, start, state,
//! delete...) and the dynamic loader costs about 0.5 ms of each run on a small VM. Why here:
//! `-C target-feature=+crt-static` cannot be set for one crate, and set globally it breaks the
//! proc-macro crates. So the link of this one binary is redirected: `-static-pie`, and the C
//! libraries rustc names (`-lc -lm -lgcc_s ...`) resolve to their static archives through
//! one-line linker scripts in OUT_DIR, added to this binary's link only. `SKIFF_DYNAMIC=1` turns it off.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-env-changed=SKIFF_COMMIT");
    println!("cargo:rerun-if-env-changed=SKIFF_DYNAMIC");
    if std::env::var("SKIFF_COMMIT").is_err() {
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        println!("cargo:rustc-env=SKIFF_COMMIT={commit}");
    }
    if std::env::var("PROFILE").as_deref() == Ok("release")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
        && std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64")
        && std::env::var_os("SKIFF_DYNAMIC").is_none()
    {
        link_static();
    }
}

fn link_static() {
    let libdir = Path::new("/usr/lib/x86_64-linux-gnu");
    let gcc_eh = std::process::Command::new("gcc")
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_absolute() && p.exists());
    let (Some(gcc_eh), true) = (gcc_eh, libdir.join("libc.a").exists()) else {
        println!("cargo:warning=static glibc (libc6-dev) or libgcc_eh.a not found: linking skiff-runtime dynamically");
        return;
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let mut scripts = vec![("libgcc_s.so", format!("INPUT({})\n", gcc_eh.display()))];
    for lib in ["c", "m", "pthread", "rt", "dl", "util"] {
        let a = libdir.join(format!("lib{lib}.a"));
        if a.exists() {
            scripts.push((
                Box::leak(format!("lib{lib}.so").into_boxed_str()),
                format!("INPUT({})\n", a.display()),
            ));
        }
    }
    for (name, text) in scripts {
        std::fs::write(out.join(name), text).expect("write a linker script in OUT_DIR");
    }
    // Only this binary: ld applies every -L to every -l, wherever it stands on the command line.
    println!("cargo:rustc-link-arg-bin=skiff-runtime=-L{}", out.display());
    println!("cargo:rustc-link-arg-bin=skiff-runtime=-static-pie");
}

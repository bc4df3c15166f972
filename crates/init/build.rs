//! Links skiff-init statically in every profile: it runs inside containers, whose images may
//! have no C library at all (or another one). As in `crates/runtime/build.rs`: `-static-pie`,
//! and the C libraries rustc names (`-lc -lgcc_s ...`) resolve to their static archives
//! through one-line linker scripts in OUT_DIR, added to this binary's link only.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("gnu")
        || std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("x86_64")
    {
        return;
    }
    let libdir = Path::new("/usr/lib/x86_64-linux-gnu");
    let gcc_eh = std::process::Command::new("gcc")
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_absolute() && p.exists());
    let (Some(gcc_eh), true) = (gcc_eh, libdir.join("libc.a").exists()) else {
        println!("cargo:warning=static glibc (libc6-dev) or libgcc_eh.a not found: skiff-init is linked dynamically and works only in images with a compatible glibc");
        return;
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let mut scripts = vec![(
        "libgcc_s.so".to_string(),
        format!("INPUT({})\n", gcc_eh.display()),
    )];
    for lib in ["c", "m", "pthread", "rt", "dl", "util"] {
        let a = libdir.join(format!("lib{lib}.a"));
        if a.exists() {
            scripts.push((format!("lib{lib}.so"), format!("INPUT({})\n", a.display())));
        }
    }
    for (name, text) in scripts {
        std::fs::write(out.join(name), text).expect("write a linker script in OUT_DIR");
    }
    println!("cargo:rustc-link-arg-bin=skiff-init=-L{}", out.display());
    println!("cargo:rustc-link-arg-bin=skiff-init=-static-pie");
}

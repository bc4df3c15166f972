//! Links one binary of a crate statically, from its build script.
//!
//! Why: skiff-runtime is exec'd several times per container and the dynamic loader costs about
//! 0.5 ms of each run; skiff-monitor and skiff-init live as long as their containers, and a
//! dynamic PIE dirties ~200 KiB of relocated data (`.data.rel.ro`, GOT) in every copy, where a
//! static non-PIE binary keeps those pages clean and shared. Why a build script:
//! `-C target-feature=+crt-static` cannot be set for one crate, and set globally it breaks the
//! proc-macro crates. So the link of one binary is redirected: `-static-pie` or `-static
//! -no-pie`, and the C libraries rustc names (`-lc -lm -lgcc_s ...`) resolve to their static
//! archives through one-line linker scripts in OUT_DIR, added to that binary's link only.
//!
//! Only for release builds of x86_64 glibc targets; `SKIFF_DYNAMIC=1` turns it off, and a
//! machine without static glibc (`libc6-dev`) or `libgcc_eh.a` gets a warning and a dynamic
//! binary.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// How the binary is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Position independent (ASLR for the program itself); relocated at start.
    Pie,
    /// Fixed addresses: no start-up relocation, its data pages stay shared between processes.
    Fixed,
}

/// Prints the cargo instructions that link binary `bin` statically in release builds (see
/// the crate docs).
pub fn link_static(bin: &str, layout: Layout) {
    println!("cargo:rerun-if-env-changed=SKIFF_DYNAMIC");
    if std::env::var("PROFILE").as_deref() != Ok("release")
        || std::env::var_os("SKIFF_DYNAMIC").is_some()
    {
        return;
    }
    link(bin, layout);
}

/// Links `bin` statically in every profile: for a binary that must run where the host's C
/// library is not (skiff-init runs inside containers, whose images may have none).
pub fn link_static_always(bin: &str, layout: Layout) {
    link(bin, layout);
}

fn link(bin: &str, layout: Layout) {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    if env("CARGO_CFG_TARGET_ENV") != "gnu" || env("CARGO_CFG_TARGET_ARCH") != "x86_64" {
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
        println!("cargo:warning=static glibc (libc6-dev) or libgcc_eh.a not found: linking {bin} dynamically");
        return;
    };
    let out = PathBuf::from(env("OUT_DIR")).join(format!("static-{bin}"));
    std::fs::create_dir_all(&out).expect("create a directory in OUT_DIR");
    let mut scripts = vec![(
        "libgcc_s.so".to_owned(),
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
    // Only this binary: ld applies every -L to every -l, wherever it stands on the command line.
    println!("cargo:rustc-link-arg-bin={bin}=-L{}", out.display());
    match layout {
        Layout::Pie => println!("cargo:rustc-link-arg-bin={bin}=-static-pie"),
        Layout::Fixed => {
            println!("cargo:rustc-link-arg-bin={bin}=-static");
            println!("cargo:rustc-link-arg-bin={bin}=-no-pie");
        }
    }
}

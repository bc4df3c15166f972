//! Links skiff-init statically (fixed addresses) in every profile: it runs inside containers,
//! whose images may have no C library at all (or another one). See skiff-linkstatic.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    skiff_linkstatic::link_static_always("skiff-init", skiff_linkstatic::Layout::Fixed);
}

//! Links the release skiff-monitor statically with fixed addresses: one lives as long as each
//! container, and a static non-PIE binary has no relocated data to dirty (see skiff-linkstatic).
fn main() {
    skiff_linkstatic::link_static("skiff-monitor", skiff_linkstatic::Layout::Fixed);
}

//! Unpacks one layer blob into a directory and prints the time: `unpack_file BLOB DEST`.
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let f = std::fs::File::open(&a[1]).unwrap();
    std::fs::create_dir_all(&a[2]).unwrap();
    let t = std::time::Instant::now();
    let st = skiff_unpack::unpack(
        std::io::BufReader::with_capacity(1 << 20, f),
        skiff_unpack::Compression::Detect,
        std::path::Path::new(&a[2]),
        &Default::default(),
    )
    .unwrap();
    eprintln!("{:?} in {:?}", st.entries, t.elapsed());
}

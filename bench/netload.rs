//! A tiny static load generator for bench/network.sh (std only; `rustc -O -C
//! target-feature=+crt-static netload.rs`), copied into the benchmark image.
//!
//!   netload sink PORT              accept forever; read each connection to its end, then close
//!   netload send HOST:PORT MIB     send MIB MiB on one connection, wait for the peer's close;
//!                                  print MB/s
//!   netload http PORT              accept forever; answer each request with a 6-byte body
//!   netload rr HOST:PORT N         N sequential connections, one request each; print the
//!                                  median and p99 in microseconds

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Instant;

fn serve(port: &str, handle: fn(TcpStream)) {
    let l = TcpListener::bind(format!("0.0.0.0:{port}")).expect("bind");
    for c in l.incoming().flatten() {
        std::thread::spawn(move || handle(c));
    }
}

fn sink(mut c: TcpStream) {
    let mut buf = vec![0u8; 1 << 20];
    while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
}

fn http(mut c: TcpStream) {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match c.read(&mut buf) {
            Ok(n) if n > 0 => req.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n");
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    match (a.get(1).map(String::as_str), a.len()) {
        (Some("sink"), 3) => serve(&a[2], sink),
        (Some("http"), 3) => serve(&a[2], http),
        (Some("send"), 4) => {
            let mib: usize = a[3].parse().expect("MiB");
            let buf = vec![0u8; 1 << 20];
            let t = Instant::now();
            let mut c = TcpStream::connect(&a[2]).expect("connect");
            for _ in 0..mib {
                c.write_all(&buf).expect("write");
            }
            c.shutdown(Shutdown::Write).expect("shutdown");
            let mut rest = Vec::new();
            let _ = c.read_to_end(&mut rest);
            let s = t.elapsed().as_secs_f64();
            println!("{:.0}", (mib << 20) as f64 / s / 1e6);
        }
        (Some("rr"), 4) => {
            let n: usize = a[3].parse().expect("N");
            let mut lat = Vec::with_capacity(n);
            for i in 0..n + 20 {
                let t = Instant::now();
                let mut c = TcpStream::connect(&a[2]).expect("connect");
                c.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
                let mut body = Vec::new();
                c.read_to_end(&mut body).expect("read");
                assert!(body.ends_with(b"hello\n"), "bad answer");
                if i >= 20 {
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
            lat.sort_by(f64::total_cmp);
            println!("{:.0} {:.0}", lat[n / 2], lat[(n * 99 / 100).min(n - 1)]);
        }
        _ => {
            eprintln!("usage: netload sink PORT | send HOST:PORT MIB | http PORT | rr HOST:PORT N");
            std::process::exit(2);
        }
    }
}

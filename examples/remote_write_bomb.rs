//! Writes a remote-write decompression bomb to the file given: `bytes` (default 32 MiB - 16)
//! of empty `TimeSeries` (`0a 00`, 48 bytes or more each once decoded) as one snappy block,
//! for `bench/soak.sh`.
//!
//!   cargo run --release --example remote_write_bomb -- OUT [BYTES]

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().expect("usage: remote_write_bomb OUT [BYTES]");
    let bytes: usize = args
        .next()
        .map(|b| b.parse().expect("BYTES is a number"))
        .unwrap_or((32 << 20) - 16);
    let raw: Vec<u8> = [0x0a_u8, 0x00].repeat(bytes.div_ceil(2))[..bytes].to_vec();
    let body = snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compresses");
    std::fs::write(&out, &body).expect("the output file is written");
    eprintln!("{} bytes of snappy, {bytes} decompressed", body.len());
}

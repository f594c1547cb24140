//! A small gzip reader (RFC 1952) with its own DEFLATE decoder (RFC 1951), and a writer of
//! uncompressed (stored-block) gzip streams.
//!
//! The data sets this crate reads (the shipped digits file, MNIST-format files) are gzip
//! compressed. Decoding DEFLATE takes about 250 lines, so the crate does it itself rather than
//! taking a dependency for it: canonical Huffman codes decoded bit by bit as in zlib's `puff.c`,
//! which is simple to verify and fast enough for files of tens of megabytes. Every error names
//! the byte offset in the compressed input where decoding failed; the CRC-32 and length in each
//! member's trailer are checked.

use crate::error::{Error, Result};

/// The two bytes every gzip stream starts with.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// True when `bytes` starts with the gzip magic number.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Decompresses a gzip stream (one or more concatenated members). `name` is the file name used
/// in errors.
pub fn decompress(bytes: &[u8], name: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(size_hint(bytes));
    let mut pos = 0;
    loop {
        pos = member(bytes, pos, name, &mut out)?;
        if pos == bytes.len() {
            return Ok(out);
        }
        if !is_gzip(&bytes[pos..]) {
            return Err(data_err(
                name,
                pos,
                "unexpected bytes after the end of the gzip stream",
            ));
        }
    }
}

/// Writes `data` as a gzip stream of stored (uncompressed) DEFLATE blocks: a valid `.gz` file
/// that any gzip reader accepts, for tests and tools that need gzip output but no compression.
pub fn compress_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut chunks = data.chunks(u16::MAX as usize).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let len = chunk.len() as u16;
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// The CRC-32 (IEEE 802.3, as in gzip and zip) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = CRC_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

fn data_err(name: &str, at: usize, message: impl Into<String>) -> Error {
    Error::Data {
        file: name.to_string(),
        at: at as u64,
        message: message.into(),
    }
}

/// The uncompressed size of a single-member stream (its last four bytes), capped so that a
/// corrupt trailer cannot make us reserve gigabytes.
fn size_hint(bytes: &[u8]) -> usize {
    match bytes.len().checked_sub(4) {
        Some(at) => {
            let isize =
                u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            (isize as usize).min(bytes.len().saturating_mul(64))
        }
        None => 0,
    }
}

/// Decodes one gzip member starting at `start`; returns the offset just past its trailer.
fn member(bytes: &[u8], start: usize, name: &str, out: &mut Vec<u8>) -> Result<usize> {
    let truncated = |at: usize| data_err(name, at, "truncated gzip header");
    if bytes.len() < start + 10 {
        return Err(truncated(bytes.len()));
    }
    if !is_gzip(&bytes[start..]) {
        return Err(data_err(
            name,
            start,
            "not a gzip stream (bad magic number)",
        ));
    }
    if bytes[start + 2] != 8 {
        let method = bytes[start + 2];
        return Err(data_err(
            name,
            start + 2,
            format!("unsupported compression method {method}"),
        ));
    }
    let flags = bytes[start + 3];
    if flags & 0xe0 != 0 {
        return Err(data_err(
            name,
            start + 3,
            format!("reserved header flags set ({flags:#04x})"),
        ));
    }
    let mut pos = start + 10;
    if flags & 0x04 != 0 {
        // FEXTRA: a little-endian length, then that many bytes.
        let len = bytes
            .get(pos..pos + 2)
            .ok_or_else(|| truncated(bytes.len()))?;
        pos += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [0x08, 0x10] {
        // FNAME and FCOMMENT: zero-terminated strings.
        if flags & flag != 0 {
            let end = bytes
                .get(pos..)
                .and_then(|rest| rest.iter().position(|&b| b == 0));
            pos += end.ok_or_else(|| truncated(bytes.len()))? + 1;
        }
    }
    if flags & 0x02 != 0 {
        pos += 2; // FHCRC: a header checksum we do not need to verify the data.
    }
    if pos > bytes.len() {
        return Err(truncated(bytes.len()));
    }
    let first = out.len();
    let end = Inflater::new(bytes, pos, name).run(out)?;
    let trailer = bytes.get(end..end + 8).ok_or_else(|| {
        data_err(
            name,
            bytes.len(),
            "truncated gzip trailer (CRC-32 and length)",
        )
    })?;
    let want_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let want_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
    let got = &out[first..];
    if crc32(got) != want_crc {
        return Err(data_err(name, end, "CRC-32 mismatch: the data is corrupt"));
    }
    if got.len() as u32 != want_len {
        let message = format!(
            "length mismatch: trailer says {want_len}, got {}",
            got.len()
        );
        return Err(data_err(name, end + 4, message));
    }
    Ok(end + 8)
}

/// A canonical Huffman code: how many codes of each length, and the symbols in code order.
struct Huffman {
    count: [u16; 16],
    symbol: Vec<u16>,
}

impl Huffman {
    /// Builds the code from per-symbol code lengths (0 = unused). `None` if over-subscribed.
    fn new(lengths: &[u8]) -> Option<Huffman> {
        let mut count = [0u16; 16];
        for &len in lengths {
            count[usize::from(len)] += 1;
        }
        let mut left: i32 = 1;
        for &c in &count[1..] {
            left = (left << 1) - i32::from(c);
            if left < 0 {
                return None;
            }
        }
        let mut offs = [0u16; 16];
        for len in 1..15 {
            offs[len + 1] = offs[len] + count[len];
        }
        let mut symbol = vec![0u16; lengths.len()];
        for (sym, &len) in lengths.iter().enumerate() {
            if len != 0 {
                symbol[usize::from(offs[usize::from(len)])] = sym as u16;
                offs[usize::from(len)] += 1;
            }
        }
        count[0] = 0;
        Some(Huffman { count, symbol })
    }
}

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// The order in which code-length code lengths are stored in a dynamic block header.
const CLEN_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// DEFLATE decoder state: the input, the next byte to load and the bits not yet consumed.
struct Inflater<'a> {
    input: &'a [u8],
    pos: usize,
    bitbuf: u32,
    bitcnt: u32,
    name: &'a str,
}

impl<'a> Inflater<'a> {
    fn new(input: &'a [u8], pos: usize, name: &'a str) -> Self {
        Inflater {
            input,
            pos,
            bitbuf: 0,
            bitcnt: 0,
            name,
        }
    }

    fn err(&self, message: impl Into<String>) -> Error {
        data_err(self.name, self.pos, message)
    }

    /// The next `need` bits (≤ 16), least significant first.
    fn bits(&mut self, need: u32) -> Result<u32> {
        while self.bitcnt < need {
            let byte = *self
                .input
                .get(self.pos)
                .ok_or_else(|| self.err("unexpected end of compressed data"))?;
            self.bitbuf |= u32::from(byte) << self.bitcnt;
            self.pos += 1;
            self.bitcnt += 8;
        }
        let value = self.bitbuf & ((1u32 << need) - 1);
        self.bitbuf >>= need;
        self.bitcnt -= need;
        Ok(value)
    }

    /// Decodes all blocks into `out`; returns the offset of the first byte after the stream.
    fn run(mut self, out: &mut Vec<u8>) -> Result<usize> {
        let stream_start = out.len();
        loop {
            let last = self.bits(1)? == 1;
            match self.bits(2)? {
                0 => self.stored(out)?,
                1 => {
                    let (lit, dist) = fixed_codes();
                    self.codes(out, stream_start, &lit, &dist)?;
                }
                2 => {
                    let (lit, dist) = self.dynamic_codes()?;
                    self.codes(out, stream_start, &lit, &dist)?;
                }
                _ => return Err(self.err("invalid DEFLATE block type 3")),
            }
            if last {
                return Ok(self.pos);
            }
        }
    }

    fn stored(&mut self, out: &mut Vec<u8>) -> Result<()> {
        self.bitbuf = 0;
        self.bitcnt = 0;
        let header = self
            .input
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| data_err(self.name, self.input.len(), "truncated stored block"))?;
        let len = u16::from_le_bytes([header[0], header[1]]);
        let nlen = u16::from_le_bytes([header[2], header[3]]);
        if len != !nlen {
            return Err(self.err("stored block length does not match its complement"));
        }
        self.pos += 4;
        let body = self
            .input
            .get(self.pos..self.pos + usize::from(len))
            .ok_or_else(|| data_err(self.name, self.input.len(), "truncated stored block"))?;
        out.extend_from_slice(body);
        self.pos += usize::from(len);
        Ok(())
    }

    fn decode(&mut self, h: &Huffman) -> Result<u16> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for &count in &h.count[1..] {
            code |= self.bits(1)? as i32;
            let count = i32::from(count);
            if code - count < first {
                return Ok(h.symbol[(index + code - first) as usize]);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(self.err("invalid Huffman code"))
    }

    fn dynamic_codes(&mut self) -> Result<(Huffman, Huffman)> {
        let nlen = self.bits(5)? as usize + 257;
        let ndist = self.bits(5)? as usize + 1;
        let ncode = self.bits(4)? as usize + 4;
        if nlen > 286 || ndist > 30 {
            return Err(self.err("bad counts in a dynamic block header"));
        }
        let mut clen = [0u8; 19];
        for &i in &CLEN_ORDER[..ncode] {
            clen[i] = self.bits(3)? as u8;
        }
        let clen_code = Huffman::new(&clen).ok_or_else(|| self.err("bad code-length code"))?;
        let mut lengths = vec![0u8; nlen + ndist];
        let mut i = 0;
        while i < nlen + ndist {
            let sym = self.decode(&clen_code)?;
            let (value, repeat) = match sym {
                0..=15 => (sym as u8, 1),
                16 if i == 0 => return Err(self.err("length repeat with no previous length")),
                16 => (lengths[i - 1], 3 + self.bits(2)? as usize),
                17 => (0, 3 + self.bits(3)? as usize),
                _ => (0, 11 + self.bits(7)? as usize),
            };
            if i + repeat > nlen + ndist {
                return Err(self.err("code lengths overrun the header's counts"));
            }
            lengths[i..i + repeat].fill(value);
            i += repeat;
        }
        if lengths[256] == 0 {
            return Err(self.err("dynamic block has no end-of-block code"));
        }
        let lit = Huffman::new(&lengths[..nlen]);
        let dist = Huffman::new(&lengths[nlen..]);
        match (lit, dist) {
            (Some(lit), Some(dist)) => Ok((lit, dist)),
            _ => Err(self.err("over-subscribed Huffman code")),
        }
    }

    fn codes(
        &mut self,
        out: &mut Vec<u8>,
        start: usize,
        lit: &Huffman,
        dist: &Huffman,
    ) -> Result<()> {
        loop {
            let sym = usize::from(self.decode(lit)?);
            if sym < 256 {
                out.push(sym as u8);
                continue;
            }
            if sym == 256 {
                return Ok(());
            }
            let li = sym - 257;
            if li >= LEN_BASE.len() {
                return Err(self.err(format!("invalid length symbol {sym}")));
            }
            let len = usize::from(LEN_BASE[li]) + self.bits(u32::from(LEN_EXTRA[li]))? as usize;
            let di = usize::from(self.decode(dist)?);
            if di >= DIST_BASE.len() {
                return Err(self.err(format!("invalid distance symbol {di}")));
            }
            let d = usize::from(DIST_BASE[di]) + self.bits(u32::from(DIST_EXTRA[di]))? as usize;
            if d > out.len() - start {
                return Err(self.err(format!("distance {d} reaches before the start of the data")));
            }
            // Byte by byte: a copy may overlap the bytes it produces (a run).
            let from = out.len() - d;
            for k in 0..len {
                let b = out[from + k];
                out.push(b);
            }
        }
    }
}

/// The fixed literal/length and distance codes of block type 1.
fn fixed_codes() -> (Huffman, Huffman) {
    let mut lengths = [0u8; 288];
    lengths[..144].fill(8);
    lengths[144..256].fill(9);
    lengths[256..280].fill(7);
    lengths[280..].fill(8);
    let lit = Huffman::new(&lengths);
    let dist = Huffman::new(&[5u8; 30]);
    match (lit, dist) {
        (Some(lit), Some(dist)) => (lit, dist),
        _ => unreachable!("the fixed DEFLATE codes are complete"),
    }
}

//! The recording file format (docs/recording-format.md): a file header, then length-prefixed,
//! checksummed blocks, each independently LZ4-compressed, holding timestamped records.
//!
//! Blocks are written whole with one `write` call, so a recorder killed at any moment leaves every
//! block before the last intact; the reader returns those and then names the damaged one.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// First bytes of every recording file (format version 1).
pub const FILE_MAGIC: &[u8; 8] = b"RUNREC\x00\x01";
/// First bytes of every block ("RBLK" little-endian).
pub const BLOCK_MAGIC: u32 = u32::from_le_bytes(*b"RBLK");
/// magic, compressed length, raw length, record count, CRC-32.
pub const BLOCK_HEADER_LEN: usize = 20;
/// A block larger than this is refused as corrupt (the writer cuts blocks far smaller).
pub const MAX_BLOCK_LEN: u32 = 64 << 20;
/// Bytes of one record's fixed part: kind, time, length.
const RECORD_HEADER_LEN: usize = 1 + 8 + 4;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A combined-stream frame as the exchange sent it: `{"stream":"btcusdt@trade","data":{...}}`.
    Stream = 1,
    /// A REST order-book snapshot: `{"symbol":"BTCUSDT","lastUpdateId":..,"bids":..,"asks":..}`.
    DepthSnapshot = 2,
    /// The exchange's `exchangeInfo` answer for the recorded symbols.
    ExchangeInfo = 3,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<RecordKind> {
        match byte {
            1 => Some(RecordKind::Stream),
            2 => Some(RecordKind::DepthSnapshot),
            3 => Some(RecordKind::ExchangeInfo),
            _ => None,
        }
    }
}

/// One recorded item: what, when it was received (local epoch µs), and its bytes (JSON text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: RecordKind,
    pub received_us: i64,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a recording file (its first bytes are not the recording header)", file.display())]
    NotARecording { file: PathBuf },
    #[error("{}: block {block} at byte {offset}: truncated ({reason}); every block before it is intact", file.display())]
    Truncated {
        file: PathBuf,
        block: u64,
        offset: u64,
        reason: String,
    },
    #[error("{}: block {block} at byte {offset}: corrupt ({reason})", file.display())]
    Corrupt {
        file: PathBuf,
        block: u64,
        offset: u64,
        reason: String,
    },
}

/// Encodes records into one block's bytes (header + compressed payload).
pub fn encode_block(records: &[Record]) -> Vec<u8> {
    let raw_len: usize = records.iter().map(|r| RECORD_HEADER_LEN + r.payload.len()).sum();
    let mut raw = Vec::with_capacity(raw_len);
    for r in records {
        raw.push(r.kind as u8);
        raw.extend_from_slice(&r.received_us.to_le_bytes());
        raw.extend_from_slice(&(r.payload.len() as u32).to_le_bytes());
        raw.extend_from_slice(&r.payload);
    }
    let compressed = lz4_flex::block::compress(&raw);
    let mut block = Vec::with_capacity(BLOCK_HEADER_LEN + compressed.len());
    block.extend_from_slice(&BLOCK_MAGIC.to_le_bytes());
    block.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
    block.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    block.extend_from_slice(&(records.len() as u32).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&block[..16]);
    crc.update(&compressed);
    block.extend_from_slice(&crc.finalize().to_le_bytes());
    block.extend_from_slice(&compressed);
    block
}

/// Appends blocks to a new recording file.
pub struct BlockWriter {
    file: File,
    path: PathBuf,
    written: u64,
}

impl BlockWriter {
    /// Creates `path` (it must not exist: recordings are never overwritten) and writes the header.
    pub fn create(path: &Path) -> Result<BlockWriter, FormatError> {
        let io_err = |source| FormatError::Io {
            file: path.to_owned(),
            source,
        };
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io_err)?;
        file.write_all(FILE_MAGIC).map_err(io_err)?;
        Ok(BlockWriter {
            file,
            path: path.to_owned(),
            written: FILE_MAGIC.len() as u64,
        })
    }

    /// Writes one block with a single call, so a kill leaves it whole or as the file's torn tail.
    pub fn write_block(&mut self, records: &[Record]) -> Result<(), FormatError> {
        if records.is_empty() {
            return Ok(());
        }
        let block = encode_block(records);
        self.file.write_all(&block).map_err(|source| FormatError::Io {
            file: self.path.clone(),
            source,
        })?;
        self.written += block.len() as u64;
        Ok(())
    }

    /// Bytes in the file so far.
    pub fn len(&self) -> u64 {
        self.written
    }

    pub fn is_empty(&self) -> bool {
        self.written <= FILE_MAGIC.len() as u64
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes to the disk (on rotation and at the end).
    pub fn sync(&mut self) -> Result<(), FormatError> {
        self.file.sync_data().map_err(|source| FormatError::Io {
            file: self.path.clone(),
            source,
        })
    }
}

/// Reads a recording file block by block.
pub struct BlockReader {
    input: BufReader<File>,
    path: PathBuf,
    offset: u64,
    block: u64,
    done: bool,
}

impl BlockReader {
    pub fn open(path: &Path) -> Result<BlockReader, FormatError> {
        let file = File::open(path).map_err(|source| FormatError::Io {
            file: path.to_owned(),
            source,
        })?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut magic = [0u8; 8];
        match read_full(&mut input, &mut magic) {
            Ok(n) if n == magic.len() && &magic == FILE_MAGIC => {}
            Ok(_) => return Err(FormatError::NotARecording { file: path.to_owned() }),
            Err(source) => {
                return Err(FormatError::Io {
                    file: path.to_owned(),
                    source,
                })
            }
        }
        Ok(BlockReader {
            input,
            path: path.to_owned(),
            offset: FILE_MAGIC.len() as u64,
            block: 0,
            done: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next block's records; `Ok(None)` at a clean end of file.
    pub fn next_block(&mut self) -> Result<Option<Vec<Record>>, FormatError> {
        if self.done {
            return Ok(None);
        }
        let result = self.read_block();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    fn read_block(&mut self) -> Result<Option<Vec<Record>>, FormatError> {
        let mut header = [0u8; BLOCK_HEADER_LEN];
        let n = read_full(&mut self.input, &mut header).map_err(|e| self.io(e))?;
        if n == 0 {
            return Ok(None);
        }
        if n < BLOCK_HEADER_LEN {
            return Err(self.truncated(format!("{n} of its {BLOCK_HEADER_LEN} header bytes")));
        }
        let word = |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let (magic, len, raw_len, count, crc) = (word(0), word(4), word(8), word(12), word(16));
        if magic != BLOCK_MAGIC {
            return Err(self.corrupt("no block marker where a block should start".into()));
        }
        if len > MAX_BLOCK_LEN || raw_len > MAX_BLOCK_LEN {
            return Err(self.corrupt(format!("a block length of {len}/{raw_len} bytes is impossible")));
        }
        let mut compressed = vec![0u8; len as usize];
        let got = read_full(&mut self.input, &mut compressed).map_err(|e| self.io(e))?;
        if got < compressed.len() {
            return Err(self.truncated(format!("{got} of its {len} payload bytes")));
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header[..16]);
        hasher.update(&compressed);
        if hasher.finalize() != crc {
            return Err(self.corrupt("checksum mismatch".into()));
        }
        let raw = lz4_flex::block::decompress(&compressed, raw_len as usize)
            .map_err(|e| self.corrupt(format!("cannot decompress: {e}")))?;
        let records = self.parse_records(&raw, count)?;
        self.offset += (BLOCK_HEADER_LEN + compressed.len()) as u64;
        self.block += 1;
        Ok(Some(records))
    }

    fn parse_records(&self, raw: &[u8], count: u32) -> Result<Vec<Record>, FormatError> {
        let mut records = Vec::with_capacity(count as usize);
        let mut at = 0usize;
        while at < raw.len() {
            if raw.len() - at < RECORD_HEADER_LEN {
                return Err(self.corrupt(format!("record {} is cut short", records.len())));
            }
            let kind = RecordKind::from_byte(raw[at])
                .ok_or_else(|| self.corrupt(format!("record {} has unknown kind {}", records.len(), raw[at])))?;
            let mut time = [0u8; 8];
            time.copy_from_slice(&raw[at + 1..at + 9]);
            let mut len = [0u8; 4];
            len.copy_from_slice(&raw[at + 9..at + 13]);
            let len = u32::from_le_bytes(len) as usize;
            let start = at + RECORD_HEADER_LEN;
            if raw.len() - start < len {
                return Err(self.corrupt(format!("record {} is cut short", records.len())));
            }
            records.push(Record {
                kind,
                received_us: i64::from_le_bytes(time),
                payload: raw[start..start + len].to_vec(),
            });
            at = start + len;
        }
        if records.len() != count as usize {
            return Err(self.corrupt(format!("{} records where the header says {count}", records.len())));
        }
        Ok(records)
    }

    fn io(&self, source: io::Error) -> FormatError {
        FormatError::Io {
            file: self.path.clone(),
            source,
        }
    }

    fn truncated(&self, reason: String) -> FormatError {
        FormatError::Truncated {
            file: self.path.clone(),
            block: self.block,
            offset: self.offset,
            reason,
        }
    }

    fn corrupt(&self, reason: String) -> FormatError {
        FormatError::Corrupt {
            file: self.path.clone(),
            block: self.block,
            offset: self.offset,
            reason,
        }
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: i64) -> Record {
        Record {
            kind: RecordKind::Stream,
            received_us: i,
            payload: format!("{{\"stream\":\"btcusdt@trade\",\"data\":{{\"t\":{i}}}}}").into_bytes(),
        }
    }

    fn write_three(path: &Path) -> Vec<u64> {
        let mut w = BlockWriter::create(path).unwrap();
        let mut ends = Vec::new();
        for b in 0..3 {
            let records: Vec<Record> = (0..50).map(|i| record(b * 100 + i)).collect();
            w.write_block(&records).unwrap();
            ends.push(w.len());
        }
        ends
    }

    fn read_all(path: &Path) -> (Vec<Record>, Option<FormatError>) {
        let mut r = BlockReader::open(path).unwrap();
        let mut out = Vec::new();
        loop {
            match r.next_block() {
                Ok(Some(block)) => out.extend(block),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn blocks_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.rrec");
        write_three(&path);
        let (records, err) = read_all(&path);
        assert!(err.is_none());
        assert_eq!(records.len(), 150);
        assert_eq!(records[51], record(101));
        assert!(BlockWriter::create(&path).is_err(), "never overwrites");
    }

    #[test]
    fn a_torn_tail_keeps_every_block_before_it_and_names_the_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.rrec");
        let ends = write_three(&path);
        let bytes = std::fs::read(&path).unwrap();
        for cut in [ends[1] + 3, ends[1] + 25, ends[2] - 1] {
            std::fs::write(&path, &bytes[..cut as usize]).unwrap();
            let (records, err) = read_all(&path);
            assert_eq!(records.len(), 100, "cut at {cut}");
            let msg = err.unwrap().to_string();
            assert!(
                msg.contains(&format!("block 2 at byte {}: truncated", ends[1])),
                "{msg}"
            );
            assert!(msg.contains("a.rrec"), "{msg}");
        }
    }

    #[test]
    fn a_flipped_byte_is_a_checksum_error_naming_the_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.rrec");
        let ends = write_three(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[ends[0] as usize + 30] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let (records, err) = read_all(&path);
        assert_eq!(records.len(), 50);
        let msg = err.unwrap().to_string();
        assert!(
            msg.contains(&format!("block 1 at byte {}: corrupt (checksum mismatch)", ends[0])),
            "{msg}"
        );
    }

    #[test]
    fn other_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, "1,2,3\n").unwrap();
        let err = BlockReader::open(&path).err().unwrap().to_string();
        assert!(err.contains("not a recording file"), "{err}");
    }
}

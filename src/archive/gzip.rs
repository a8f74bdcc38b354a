//! The archive's gzip stream (RFC 1952): one gzip member per [`MEMBER_INPUT`] bytes of tar, each
//! compressed on a thread of its own while the next is gathered, and written out in order.
//!
//! RFC 1952 §2.2 lets a gzip file hold several members; Go's `compress/gzip` reader (Velero's
//! extractor), `gunzip` and flate2's `MultiGzDecoder` read them all as one stream. Members are
//! independent, so compressing several at once changes no byte of the output.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::thread::JoinHandle;

/// Bytes of tar compressed into each gzip member (2 MiB).
const MEMBER_INPUT: usize = 2 << 20;

/// Room above [`MEMBER_INPUT`] in a member's input buffer (256 KiB): the tar builder's writes
/// that cross the boundary land there without a reallocation.
const MEMBER_SLACK: usize = 256 << 10;

/// Bytes at the start of a member that ISA-L compresses first to judge the member (64 KiB).
const PROBE: usize = 64 << 10;

/// The ISA-L compression ratio of the probe (its bytes / their compressed bytes) from which the
/// member is compressed by libdeflate: JSON and text compress this well, and there libdeflate's
/// thorough matcher beats gzip -6 where ISA-L's fast one does not. Below it (random bytes,
/// base64, already compressed data) gzip -6 gains next to nothing over ISA-L, which is three to
/// four times faster there.
const DEFLATE_FROM_RATIO: usize = 3;

/// libdeflate's level: the lowest level whose output was no larger than gzip -6's (Go's default,
/// which Velero's writer uses, and zlib's) on every sample measured (the benchmark's workload,
/// small ConfigMaps, Deployment specs, text, random hex); level 6 was larger than zlib -6 on small
/// ConfigMaps. On the benchmark's 100,000-object tar (884 MB) levels 5 to 9 cost 2.4–3.2 CPU-s;
/// levels 1 to 4 save at most a fifth of that and are 4–7% larger than gzip -6.
const DEFLATE_LEVEL: i32 = 7;

/// The most members compressed at once (4): four threads compress about 1 GB of tar a second
/// (two compress 466 MB/s), the tar of some 400 MB of LIST responses a second, more than one API
/// server sends; and four members' buffers bound the memory to about 20 MiB on any machine.
const MAX_THREADS: usize = 4;

/// Members compressed at once by default: [`threads_for`] the CPUs this process may use
/// (`std::thread::available_parallelism`, which honours a cgroup CPU quota).
pub(super) fn default_threads() -> usize {
    threads_for(std::thread::available_parallelism().ok().map(|n| n.get()))
}

/// As many as `cpus`, between 1 and [`MAX_THREADS`]; 1 when `cpus` is unknown. The thread that
/// builds the tar waits while the threads are busy, so it takes no CPU from them then.
///
/// Measured with `cargo bench --bench backup_restore -- --objects 100000 --backup-only` on the
/// 2-CPU machine the API server shares: 2 threads made the backup 4–6% faster than 1 (bests
/// 4.78 s and 4.98 s against 5.07 s and 5.20 s, interleaved runs on one cluster); with both CPUs
/// idle the writer compresses the benchmark's 884 MB tar at 466 MB/s with 2 threads against
/// 272 MB/s with 1.
fn threads_for(cpus: Option<usize>) -> usize {
    cpus.unwrap_or(1).clamp(1, MAX_THREADS)
}

/// One member's compressor: libdeflate's state (boxed: it is large) and the buffer the member is
/// compressed into, kept for the next member.
struct Encoder {
    deflater: Box<libdeflater::Compressor>,
    packed: Vec<u8>,
}

impl Encoder {
    fn new() -> Self {
        Self {
            deflater: Box::new(libdeflater::Compressor::new(
                libdeflater::CompressionLvl::new(DEFLATE_LEVEL)
                    .unwrap_or_else(|_| libdeflater::CompressionLvl::default()),
            )),
            packed: Vec::new(),
        }
    }

    /// ISA-L level 1 of `input` into `self.packed`; the compressed length.
    fn isal(&mut self, input: &[u8]) -> io::Result<usize> {
        // Stored blocks are the worst case: 5 bytes per 64 KiB block, plus header and trailer.
        self.packed
            .resize(input.len() + input.len() / 1024 + 1024, 0);
        isal::compress_into(
            input,
            &mut self.packed,
            isal::CompressionLevel::One,
            isal::Codec::Gzip,
        )
        .map_err(|e| io::Error::other(format!("gzip (ISA-L): {e}")))
    }

    /// Compresses `input` into one gzip member in `self.packed` and returns its length: by
    /// libdeflate at [`DEFLATE_LEVEL`] when ISA-L's igzip at level 1 compresses the first
    /// [`PROBE`] bytes at least [`DEFLATE_FROM_RATIO`] times, else by ISA-L. Measured on the
    /// benchmark's 10,000-object tar (89 MB; `cargo bench --bench backup_restore` prints the
    /// comparison): ISA-L alone 15.5 MB in 0.07 s, libdeflate level 7 14.2 MB in 0.28 s, Velero's
    /// gzip -6 14.4 MB, zlib -6 15.6 MB.
    ///
    /// # Errors
    /// An encoder's failure, as an I/O error.
    fn compress(&mut self, input: &[u8]) -> io::Result<usize> {
        let probe = input.len().min(PROBE);
        let probed = self.isal(&input[..probe])?;
        if probed.saturating_mul(DEFLATE_FROM_RATIO) <= probe {
            self.packed
                .resize(self.deflater.gzip_compress_bound(input.len()), 0);
            self.deflater
                .gzip_compress(input, &mut self.packed)
                .map_err(|e| io::Error::other(format!("gzip (libdeflate): {e:?}")))
        } else if probe == input.len() {
            Ok(probed)
        } else {
            self.isal(input)
        }
    }
}

/// A member being compressed: its thread hands back the encoder, the input buffer (both for the
/// next member) and the member's length in the encoder's buffer.
type Compressing = JoinHandle<io::Result<(Encoder, Vec<u8>, usize)>>;

/// The archive's gzip stream into `W`: tar bytes are gathered into a member; a full member goes to
/// a thread of its own, up to `threads` at once, and members are written to `W` in the order they
/// were gathered.
///
/// `flush` does nothing: members end at [`MEMBER_INPUT`] boundaries and in [`Gzip::finish`].
pub(super) struct Gzip<W: Write> {
    out: W,
    /// Tar bytes of the member being gathered.
    pending: Vec<u8>,
    /// Members being compressed, oldest first.
    compressing: VecDeque<Compressing>,
    /// Encoders not in use.
    encoders: Vec<Encoder>,
    /// Input buffers not in use.
    buffers: Vec<Vec<u8>>,
    /// The most members compressed at once (at least 1).
    threads: usize,
}

impl<W: Write> Gzip<W> {
    /// Starts a gzip stream into `out`, compressing up to `threads` members at once (at least 1).
    pub(super) fn new(out: W, threads: usize) -> Self {
        Self {
            out,
            pending: Vec::with_capacity(MEMBER_INPUT + MEMBER_SLACK),
            compressing: VecDeque::new(),
            encoders: Vec::new(),
            buffers: Vec::new(),
            threads: threads.max(1),
        }
    }

    /// Hands the gathered bytes to a compression thread, after writing out the oldest member
    /// when `threads` are already busy.
    fn emit(&mut self) -> io::Result<()> {
        if self.compressing.len() >= self.threads {
            self.write_oldest()?;
        }
        let next = self
            .buffers
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(MEMBER_INPUT + MEMBER_SLACK));
        let input = std::mem::replace(&mut self.pending, next);
        let mut encoder = self.encoders.pop().unwrap_or_else(Encoder::new);
        let thread = std::thread::Builder::new()
            .name("tidemark-gzip".into())
            .spawn(move || {
                let len = encoder.compress(&input)?;
                Ok((encoder, input, len))
            })?;
        self.compressing.push_back(thread);
        Ok(())
    }

    /// Waits for the oldest member being compressed and writes it out.
    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(thread) = self.compressing.pop_front() else {
            return Ok(());
        };
        let (encoder, mut input, len) = thread
            .join()
            .map_err(|_| io::Error::other("gzip: a compression thread panicked"))??;
        self.out.write_all(&encoder.packed[..len])?;
        input.clear();
        self.buffers.push(input);
        self.encoders.push(encoder);
        Ok(())
    }

    /// Compresses the last member, writes every member still being compressed and returns the
    /// writer.
    ///
    /// # Errors
    /// An I/O error from the writer or an encoder.
    pub(super) fn finish(mut self) -> io::Result<W> {
        self.emit()?;
        while !self.compressing.is_empty() {
            self.write_oldest()?;
        }
        Ok(self.out)
    }
}

impl<W: Write> Write for Gzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(data);
        if self.pending.len() >= MEMBER_INPUT {
            self.emit()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the gzip members of `gz` and checks each one decodes (single-member decoders).
    fn members(gz: &[u8]) -> usize {
        let mut rest = gz;
        let mut n = 0;
        while !rest.is_empty() {
            let mut d = flate2::bufread::GzDecoder::new(rest);
            std::io::copy(&mut d, &mut std::io::sink()).unwrap();
            let left = d.into_inner();
            assert!(left.len() < rest.len());
            rest = left;
            n += 1;
        }
        n
    }

    /// Text that compresses well (libdeflate), then random bytes that do not (ISA-L): about
    /// 8 MB, five members.
    fn text_then_random() -> Vec<u8> {
        let mut data = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..200_000u64 {
            data.extend_from_slice(format!("key-{}: {:016x}\n", i % 97, next()).as_bytes());
        }
        for _ in 0..400_000u64 {
            data.extend_from_slice(&next().to_le_bytes());
        }
        data
    }

    /// `data` through a [`Gzip`] of `threads`, written in pieces of `piece` bytes, flushed
    /// after every third.
    fn compress(data: &[u8], threads: usize, piece: usize) -> Vec<u8> {
        let mut gz = Gzip::new(Vec::new(), threads);
        for (i, piece) in data.chunks(piece).enumerate() {
            gz.write_all(piece).unwrap();
            if i % 3 == 0 {
                gz.flush().unwrap();
            }
        }
        gz.finish().unwrap()
    }

    #[test]
    fn gzip_members_hold_the_whole_stream_whatever_the_flushes() {
        use std::io::Read;
        let data = text_then_random();
        let compressed = compress(&data, 1, 70_001);
        assert_eq!(members(&compressed), data.len().div_ceil(MEMBER_INPUT));
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&compressed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back.len(), data.len());
        assert!(back == data);
    }

    #[test]
    fn structured_data_is_no_larger_than_gzip_6() {
        // Many small JSON objects, as a cluster's ConfigMaps: where ISA-L level 1 alone is a
        // quarter larger than gzip -6.
        let mut data = Vec::new();
        for i in 0..20_000u32 {
            data.extend_from_slice(
                format!(
                    r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm-{i:05}","namespace":"ns-{}","uid":"{:08x}-77aa-4c1e-9d2b-{:012x}","resourceVersion":"{}"}},"data":{{"key":"value-{i}"}}}}"#,
                    i % 10,
                    i.wrapping_mul(2_654_435_761),
                    u64::from(i).wrapping_mul(0x9e37_79b9_7f4a),
                    1000 + i
                )
                .as_bytes(),
            );
        }
        let mut gz = Gzip::new(Vec::new(), 2);
        gz.write_all(&data).unwrap();
        let ours = gz.finish().unwrap().len();
        let mut z6 = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        z6.write_all(&data).unwrap();
        let z6 = z6.finish().unwrap().len();
        let isal_only = isal::compress(&data[..], isal::CompressionLevel::One, isal::Codec::Gzip)
            .unwrap()
            .len();
        assert!(ours <= z6, "ours {ours} bytes, gzip -6 {z6} bytes");
        assert!(
            isal_only > z6,
            "the sample must be one where the second pass matters"
        );
    }

    #[test]
    fn members_compressed_at_once_give_the_same_bytes() {
        let data = text_then_random();
        let serial = compress(&data, 1, 100_003);
        assert!(
            members(&serial) > 3,
            "the sample must span more members than threads"
        );
        assert!(
            serial == compress(&data, 3, 100_003),
            "3 threads wrote other bytes than 1"
        );
    }

    #[test]
    fn threads_follow_the_cpus_and_stay_bounded() {
        assert_eq!(threads_for(None), 1);
        assert_eq!(threads_for(Some(0)), 1);
        assert_eq!(threads_for(Some(1)), 1);
        assert_eq!(threads_for(Some(2)), 2);
        assert_eq!(threads_for(Some(64)), MAX_THREADS);
    }
}

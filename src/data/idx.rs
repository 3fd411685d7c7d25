//! IDX reading with full validation: a header is never trusted for an allocation, gzip is
//! sniffed, every malformation is an error naming the file.

use super::*;

/// Reads an IDX file of `u8` samples, raw or gzip-compressed (detected from its first bytes).
///
/// Accepts magic `0x00000802..=0x00000804` (count plus 1 to 3 sample dimensions; the usual
/// `0x00000803` is count × rows × columns). Returns `(count, len, data)` where `len` is the
/// product of the dimensions after the count and `data` holds `count × len` bytes.
pub fn read_idx_images(path: &Path) -> Result<(usize, usize, Vec<u8>), DataError> {
    let (dims, data) = read_idx(path, 2..=4, IDX_IMAGES_MAGIC)?;
    let count = dims[0];
    // The product of all dims was checked for overflow, so the tail product cannot overflow.
    let len = dims[1..].iter().product();
    Ok((count, len, data))
}

/// Reads an IDX labels file (magic `0x00000801`, one `u8` per sample), raw or gzip-compressed.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    read_idx(path, 1..=1, IDX_LABELS_MAGIC).map(|(_, data)| data)
}

/// Parses the bytes of an IDX file (raw or gzip) as [`read_idx_images`] (`labels == false`) or
/// [`read_idx_labels`] reads a file; `name` names it in errors. Returns the dimensions and the
/// payload. Any bytes give a result or an error, never a panic (fuzzed).
pub fn parse_idx(
    bytes: &[u8],
    name: &Path,
    labels: bool,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let header = IdxSpec {
        path: name,
        ndims: if labels { 1..=1 } else { 2..=4 },
        expected_magic: if labels {
            IDX_LABELS_MAGIC
        } else {
            IDX_IMAGES_MAGIC
        },
    };
    let len = bytes.len() as u64;
    if bytes.starts_with(&GZIP_MAGIC) {
        header.read(
            MultiGzDecoder::new(std::io::BufReader::new(bytes)),
            true,
            len.saturating_mul(MAX_DEFLATE_RATIO),
        )
    } else {
        header.read(bytes, false, len)
    }
}

/// Opens `path`, sniffs gzip, and reads a `u8` IDX file whose number of dimensions lies in
/// `ndims`. Returns the dimensions and the payload.
pub(crate) fn read_idx(
    path: &Path,
    ndims: RangeInclusive<u8>,
    expected_magic: u32,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let io_err = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut reader = BufReader::with_capacity(READ_BUFFER, file);
    let is_gzip = reader.fill_buf().map_err(io_err)?.starts_with(&GZIP_MAGIC);
    let header = IdxSpec {
        path,
        ndims,
        expected_magic,
    };
    if is_gzip {
        let bound = file_len.saturating_mul(MAX_DEFLATE_RATIO);
        header.read(MultiGzDecoder::new(reader), true, bound)
    } else {
        header.read(reader, false, file_len)
    }
}

/// What an IDX reader expects of a file.
pub(crate) struct IdxSpec<'a> {
    path: &'a Path,
    ndims: RangeInclusive<u8>,
    expected_magic: u32,
}

impl IdxSpec<'_> {
    /// Reads header and payload from `r` (the decompressed stream for gzip). `max_bytes` is an
    /// upper bound on what the stream can hold: the file size for raw files (checked exactly),
    /// the deflate bound for gzip (used only to cap pre-allocation).
    fn read<R: Read>(
        &self,
        mut r: R,
        gzip: bool,
        max_bytes: u64,
    ) -> Result<(Vec<usize>, Vec<u8>), DataError> {
        let nd = self.read_magic(&mut r, gzip)?;
        let header_len = 4 + 4 * usize::from(nd);
        let dims32 = self.read_dims(&mut r, gzip, nd, header_len)?;
        let shape = self.check_dims(&dims32, header_len)?;
        // Raw files: the exact size is known, so check it before reading or allocating.
        if !gzip {
            self.check_raw_size(max_bytes, shape.expected_total)?;
        }
        let data = self.read_payload(r, gzip, max_bytes, header_len, &shape)?;
        Ok((shape.dims, data))
    }

    /// The error of a failed read: a gzip error for gzip streams, else an I/O error.
    fn stream_err(&self, gzip: bool, source: io::Error) -> DataError {
        let path = self.path.to_path_buf();
        if gzip {
            DataError::Gzip { path, source }
        } else {
            DataError::Io { path, source }
        }
    }

    fn truncated(&self, expected_bytes: u64, actual_bytes: u64) -> DataError {
        DataError::Truncated {
            path: self.path.to_path_buf(),
            expected_bytes,
            actual_bytes,
        }
    }

    fn trailing(&self, expected_bytes: u64) -> DataError {
        DataError::TrailingBytes {
            path: self.path.to_path_buf(),
            expected_bytes,
        }
    }

    /// Reads and checks the magic (0x00 0x00, type byte, number of dimensions); returns the
    /// number of dimensions.
    fn read_magic<R: Read>(&self, r: &mut R, gzip: bool) -> Result<u8, DataError> {
        let mut magic = [0u8; 4];
        let got = read_up_to(r, &mut magic).map_err(|e| self.stream_err(gzip, e))?;
        if got < magic.len() {
            return Err(self.truncated(4, got as u64));
        }
        let nd = magic[3];
        if magic[0] != 0 || magic[1] != 0 || magic[2] != IDX_TYPE_U8 || !self.ndims.contains(&nd) {
            return Err(DataError::BadMagic {
                path: self.path.to_path_buf(),
                found: u32::from_be_bytes(magic),
                expected: self.expected_magic,
            });
        }
        Ok(nd)
    }

    /// Reads the `nd` dimensions, one big-endian u32 each.
    fn read_dims<R: Read>(
        &self,
        r: &mut R,
        gzip: bool,
        nd: u8,
        header_len: usize,
    ) -> Result<Vec<u32>, DataError> {
        let mut raw = vec![0u8; 4 * usize::from(nd)];
        let got = read_up_to(r, &mut raw).map_err(|e| self.stream_err(gzip, e))?;
        if got < raw.len() {
            return Err(self.truncated(header_len as u64, (4 + got) as u64));
        }
        Ok(raw
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Checks the dimensions (no zero, no overflow) and works out the sizes they imply.
    fn check_dims(&self, dims32: &[u32], header_len: usize) -> Result<IdxShape, DataError> {
        let bad_dims = |reason: &str| DataError::BadDims {
            path: self.path.to_path_buf(),
            dims: dims32.to_vec(),
            reason: reason.to_string(),
        };
        if dims32[0] == 0 {
            return Err(DataError::Empty {
                path: self.path.to_path_buf(),
            });
        }
        if dims32[1..].contains(&0) {
            return Err(bad_dims("a sample dimension is zero"));
        }
        let payload = dims32
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
            .ok_or_else(|| bad_dims("count × dimensions overflows"))?;
        let expected_total = payload
            .checked_add(header_len as u64)
            .ok_or_else(|| bad_dims("count × dimensions overflows"))?;
        let dims = dims32
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| bad_dims("a dimension does not fit this platform's usize"))?;
        let payload_usize = usize::try_from(payload)
            .map_err(|_| bad_dims("the data size does not fit this platform's usize"))?;
        Ok(IdxShape {
            dims,
            payload,
            payload_usize,
            expected_total,
        })
    }

    /// A raw file's size must be exactly what its header implies.
    fn check_raw_size(&self, file_len: u64, expected_total: u64) -> Result<(), DataError> {
        if file_len < expected_total {
            return Err(self.truncated(expected_total, file_len));
        }
        if file_len > expected_total {
            return Err(self.trailing(expected_total));
        }
        Ok(())
    }

    /// Reads the payload that `shape` announces, and checks that exactly that much follows.
    fn read_payload<R: Read>(
        &self,
        mut r: R,
        gzip: bool,
        max_bytes: u64,
        header_len: usize,
        shape: &IdxShape,
    ) -> Result<Vec<u8>, DataError> {
        let payload = shape.payload;
        // Pre-allocate no more than the stream can possibly hold, then read at most one byte
        // past the header-implied size so that both truncation and trailing data show. When
        // fewer bytes arrive than the limit, the stream reached its end: for gzip that means
        // every member's CRC and size trailer was checked and nothing follows the last one.
        let capacity = payload.min(max_bytes.saturating_sub(header_len as u64));
        let mut data = Vec::new();
        data.try_reserve_exact(usize::try_from(capacity).unwrap_or(shape.payload_usize))
            .map_err(|e| self.stream_err(gzip, io::Error::new(io::ErrorKind::OutOfMemory, e)))?;
        (&mut r)
            .take(payload.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| self.stream_err(gzip, e))?;
        let got = data.len() as u64;
        if got < payload {
            return Err(self.truncated(shape.expected_total, header_len as u64 + got));
        }
        if got > payload {
            return Err(self.trailing(shape.expected_total));
        }
        Ok(data)
    }
}

/// The sizes an IDX header implies.
struct IdxShape {
    /// The dimensions, count first.
    dims: Vec<usize>,
    /// Payload bytes (the product of the dimensions), also as a `usize`.
    payload: u64,
    payload_usize: usize,
    /// Header plus payload bytes.
    expected_total: u64,
}

/// Fills `buf` from `r` until it is full or the stream ends; returns the bytes read.
pub(crate) fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

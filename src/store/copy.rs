//! PostgreSQL's binary `COPY` format: a header, tuples of length-prefixed big-endian fields,
//! a trailer. Samples and scores are written this way: one statement per batch, stored whole
//! or not at all, with no text to parse on the server. Training reads samples back the same
//! way ([`Reader`]), with no row decoding per value.

/// The signature, the flags (none) and the header extension's length (0).
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The end of the data: a field count of -1.
pub const TRAILER: [u8; 2] = (-1i16).to_be_bytes();

/// Sends `data` into an open `COPY`; when that fails, aborts the `COPY` (so that the
/// connection can be used again) and returns the send's error.
pub async fn send<C>(
    mut copy: sqlx::postgres::PgCopyIn<C>,
    data: Vec<u8>,
) -> sqlx::Result<sqlx::postgres::PgCopyIn<C>>
where
    C: std::ops::DerefMut<Target = sqlx::PgConnection>,
{
    if let Err(e) = copy.send(data).await {
        copy.abort("send failed").await.ok();
        return Err(e);
    }
    Ok(copy)
}

/// Microseconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// One tuple being written to `out`: [`Tuple::start`] writes its field count, then each
/// method appends one field.
pub struct Tuple<'a>(&'a mut Vec<u8>);

impl<'a> Tuple<'a> {
    /// Starts a tuple of `fields` fields.
    pub fn start(out: &'a mut Vec<u8>, fields: i16) -> Self {
        out.extend_from_slice(&fields.to_be_bytes());
        Tuple(out)
    }

    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.0
            .extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    /// A NULL.
    pub fn null(&mut self) -> &mut Self {
        self.0.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    /// An `int8`.
    pub fn int8(&mut self, v: i64) -> &mut Self {
        self.field(&v.to_be_bytes())
    }

    /// An `int4`.
    pub fn int4(&mut self, v: i32) -> &mut Self {
        self.field(&v.to_be_bytes())
    }

    /// A `float8`.
    pub fn float8(&mut self, v: f64) -> &mut Self {
        self.field(&v.to_be_bytes())
    }

    /// A `bool`.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.field(&[u8::from(v)])
    }

    /// A `text`.
    pub fn text(&mut self, v: &str) -> &mut Self {
        self.field(v.as_bytes())
    }

    /// A `timestamptz` given in microseconds since the Unix epoch.
    pub fn timestamptz(&mut self, unix_micros: i64) -> &mut Self {
        self.field(&(unix_micros - PG_EPOCH_OFFSET_MICROS).to_be_bytes())
    }

    /// A `jsonb`: format version 1, then the JSON text.
    pub fn jsonb(&mut self, v: &serde_json::Value) -> &mut Self {
        let at = self.0.len();
        self.0.extend_from_slice(&0i32.to_be_bytes());
        self.0.push(1);
        // Writing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *self.0, v);
        let len = (self.0.len() - at - 4) as i32;
        self.0[at..at + 4].copy_from_slice(&len.to_be_bytes());
        self
    }

    /// `value` written by `write`, or a NULL for `None`.
    pub fn or_null<T>(
        &mut self,
        value: Option<T>,
        write: impl FnOnce(&mut Self, T) -> &mut Self,
    ) -> &mut Self {
        match value {
            Some(v) => write(self, v),
            None => self.null(),
        }
    }
}

/// Reads a binary `COPY ... to stdout` as it arrives, in chunks that may split the header or
/// a tuple anywhere: [`Reader::feed`] hands each complete tuple to a callback, and
/// [`Reader::finish`] checks that the trailer came.
#[derive(Debug, Default)]
pub struct Reader {
    /// Bytes of an incomplete header or tuple, waiting for the next chunk.
    pending: Vec<u8>,
    header_read: bool,
    trailer_read: bool,
}

fn malformed(what: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!("binary COPY data: {what}"))
}

impl Reader {
    /// Parses `chunk` after what came before it, calling `tuple` with each complete tuple.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        tuple: &mut impl FnMut(&mut Fields<'_>) -> sqlx::Result<()>,
    ) -> sqlx::Result<()> {
        if self.pending.is_empty() {
            let used = self.parse(chunk, tuple)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            let mut data = std::mem::take(&mut self.pending);
            data.extend_from_slice(chunk);
            let used = self.parse(&data, tuple)?;
            data.drain(..used);
            self.pending = data;
        }
        Ok(())
    }

    /// Checks that the data ended with the trailer, nothing after it.
    pub fn finish(self) -> sqlx::Result<()> {
        if self.trailer_read && self.pending.is_empty() {
            Ok(())
        } else {
            Err(malformed("ended before its trailer"))
        }
    }

    /// Parses the complete header and tuples at the start of `data`; returns how many bytes
    /// they took.
    fn parse(
        &mut self,
        data: &[u8],
        tuple: &mut impl FnMut(&mut Fields<'_>) -> sqlx::Result<()>,
    ) -> sqlx::Result<usize> {
        let mut at = 0;
        if !self.header_read {
            // The signature, the flags and the header extension's length, then the extension.
            if data.len() < HEADER.len() {
                return Ok(0);
            }
            if data[..11] != HEADER[..11] {
                return Err(malformed("no binary COPY signature"));
            }
            let extension = be_i32(&data[15..19]);
            let extension =
                usize::try_from(extension).map_err(|_| malformed("negative header length"))?;
            if data.len() < HEADER.len() + extension {
                return Ok(0);
            }
            at = HEADER.len() + extension;
            self.header_read = true;
        }
        while at < data.len() {
            if self.trailer_read {
                return Err(malformed("data after the trailer"));
            }
            let rest = &data[at..];
            let Some(count) = rest.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]])) else {
                break;
            };
            if count == -1 {
                self.trailer_read = true;
                at += 2;
                continue;
            }
            let count = usize::try_from(count).map_err(|_| malformed("negative field count"))?;
            // Walk the field lengths to the tuple's end; stop at a tuple cut by the chunk.
            let mut end = 2;
            let mut complete = true;
            for _ in 0..count {
                let Some(len) = rest.get(end..end + 4).map(be_i32) else {
                    complete = false;
                    break;
                };
                end += 4;
                match len {
                    -1 => {}
                    len if len >= 0 => end += len as usize,
                    _ => return Err(malformed("negative field length")),
                }
            }
            if !complete || end > rest.len() {
                break;
            }
            tuple(&mut Fields {
                rest: &rest[2..end],
            })?;
            at += end;
        }
        Ok(at)
    }
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The fields of one tuple, read in order; a NULL or a field of the wrong size is an error.
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl Fields<'_> {
    fn next<const N: usize>(&mut self) -> sqlx::Result<[u8; N]> {
        let len = self
            .rest
            .get(..4)
            .map(be_i32)
            .ok_or_else(|| malformed("fewer fields than expected"))?;
        if len != N as i32 {
            return Err(malformed(&format!(
                "a field of {len} bytes where {N} were expected"
            )));
        }
        let value = self.rest[4..4 + N].try_into().expect("length checked");
        self.rest = &self.rest[4 + N..];
        Ok(value)
    }

    /// An `int8`.
    pub fn int8(&mut self) -> sqlx::Result<i64> {
        self.next().map(i64::from_be_bytes)
    }

    /// An `int4`.
    pub fn int4(&mut self) -> sqlx::Result<i32> {
        self.next().map(i32::from_be_bytes)
    }

    /// A `float8`.
    pub fn float8(&mut self) -> sqlx::Result<f64> {
        self.next().map(f64::from_be_bytes)
    }

    /// A `timestamptz`, in microseconds since the Unix epoch.
    pub fn timestamptz(&mut self) -> sqlx::Result<i64> {
        Ok(self.int8()? + PG_EPOCH_OFFSET_MICROS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary COPY stream of `(int8, int4, timestamptz, float8)` tuples.
    fn stream(rows: &[(i64, i32, i64, f64)]) -> Vec<u8> {
        let mut out = HEADER.to_vec();
        for &(a, m, ts, v) in rows {
            Tuple::start(&mut out, 4)
                .int8(a)
                .int4(m)
                .timestamptz(ts)
                .float8(v);
        }
        out.extend_from_slice(&TRAILER);
        out
    }

    fn read(chunks: &[&[u8]]) -> sqlx::Result<Vec<(i64, i32, i64, f64)>> {
        let mut rows = Vec::new();
        let mut reader = Reader::default();
        for chunk in chunks {
            reader.feed(chunk, &mut |f| {
                rows.push((f.int8()?, f.int4()?, f.timestamptz()?, f.float8()?));
                Ok(())
            })?;
        }
        reader.finish()?;
        Ok(rows)
    }

    #[test]
    fn tuples_are_read_back_however_the_stream_is_cut() {
        let rows = [
            (1, 2, 1_704_067_200_000_000, 0.5),
            (-3, i32::MAX, -1, -1e300),
            (i64::MAX, 0, 946_684_800_000_000, f64::MIN_POSITIVE),
        ];
        let data = stream(&rows);
        assert_eq!(read(&[&data]).unwrap(), rows);
        for cut in 0..=data.len() {
            let (a, b) = data.split_at(cut);
            assert_eq!(read(&[a, b]).unwrap(), rows, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(read(&bytes).unwrap(), rows);
    }

    #[test]
    fn malformed_streams_are_errors() {
        let data = stream(&[(1, 2, 3, 4.0)]);
        // Cut short: no trailer.
        assert!(read(&[&data[..data.len() - 2]]).is_err());
        assert!(read(&[&data[..data.len() - 5]]).is_err());
        // Not a binary COPY.
        assert!(read(&[b"asset,metric,ts,value\n1,2,3,4\n"]).is_err());
        // Data after the trailer.
        let mut extra = data.clone();
        extra.extend_from_slice(&[0, 0]);
        assert!(read(&[&extra]).is_err());
        // A NULL where a value is expected.
        let mut out = HEADER.to_vec();
        Tuple::start(&mut out, 1).null();
        out.extend_from_slice(&TRAILER);
        let mut reader = Reader::default();
        let err = reader
            .feed(&out, &mut |f| f.int8().map(|_| ()))
            .unwrap_err();
        assert!(err.to_string().contains("-1 bytes"), "{err}");
    }

    #[test]
    fn fields_are_length_prefixed_big_endian() {
        let mut out = Vec::new();
        Tuple::start(&mut out, 4)
            .int8(1)
            .null()
            .bool(true)
            .jsonb(&serde_json::json!({"a": 1}));
        let mut expected = vec![0, 4];
        expected.extend([0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
        expected.extend([255, 255, 255, 255]);
        expected.extend([0, 0, 0, 1, 1]);
        expected.extend([0, 0, 0, 8, 1]);
        expected.extend(br#"{"a":1}"#);
        assert_eq!(out, expected);
        let mut out = Vec::new();
        Tuple::start(&mut out, 1).timestamptz(946_684_800_000_001);
        assert_eq!(out, [0, 1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(HEADER.len(), 19);
    }
}

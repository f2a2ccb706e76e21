//! PostgreSQL's binary `COPY` format: a header, tuples of length-prefixed big-endian fields,
//! a trailer. Samples and scores are written this way: one statement per batch, stored whole
//! or not at all, with no text to parse on the server.

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

#[cfg(test)]
mod tests {
    use super::*;

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

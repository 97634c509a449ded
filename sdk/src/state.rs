//! A tiny byte codec for policy state.
//!
//! State is opaque bytes owned by the host and handed back on the next call, and possibly to another
//! version of the policy after a hot swap. Encode it compactly, start it with a format tag, and treat
//! anything you cannot decode as "no state" ([`StateReader`] returns `None` rather than failing).

/// Appends fields after a format tag.
pub struct StateWriter(Vec<u8>);

impl StateWriter {
    pub fn new(tag: u8) -> Self {
        StateWriter(vec![tag])
    }

    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn opt_u64(self, v: Option<u64>) -> Self {
        match v {
            None => self.flag(false),
            Some(v) => self.flag(true).u64(v),
        }
    }

    pub fn flag(mut self, v: bool) -> Self {
        self.0.push(u8::from(v));
        self
    }

    /// A string of at most 255 bytes (longer ones are cut at a character boundary).
    pub fn str(mut self, s: &str) -> Self {
        let mut end = s.len().min(255);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.0.push(end as u8);
        self.0.extend_from_slice(&s.as_bytes()[..end]);
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads fields written by [`StateWriter`]; every read returns `None` on malformed input.
pub struct StateReader<'a>(&'a [u8]);

impl<'a> StateReader<'a> {
    /// `None` unless the bytes start with `tag`.
    pub fn new(bytes: &'a [u8], tag: u8) -> Option<Self> {
        match bytes.split_first() {
            Some((&t, rest)) if t == tag => Some(StateReader(rest)),
            _ => None,
        }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    pub fn flag(&mut self) -> Option<bool> {
        match self.take(1)?[0] {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    pub fn opt_u64(&mut self) -> Option<Option<u64>> {
        if self.flag()? { Some(Some(self.u64()?)) } else { Some(None) }
    }

    pub fn str(&mut self) -> Option<&'a str> {
        let len = self.take(1)?[0] as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }

    /// Whether every byte was read (trailing bytes mean a format we do not know).
    pub fn is_done(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage_is_none() {
        let bytes = StateWriter::new(7).opt_u64(Some(42)).opt_u64(None).str("prefill").u64(9).finish();
        let mut r = StateReader::new(&bytes, 7).expect("tag matches");
        assert_eq!(r.opt_u64(), Some(Some(42)));
        assert_eq!(r.opt_u64(), Some(None));
        assert_eq!(r.str(), Some("prefill"));
        assert_eq!(r.u64(), Some(9));
        assert!(r.is_done());
        assert!(StateReader::new(&bytes, 8).is_none());
        assert!(StateReader::new(&bytes[..5], 7).expect("tag").opt_u64().is_none());
    }
}

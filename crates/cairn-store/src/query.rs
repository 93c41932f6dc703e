//! What every backend's reads share: the default page of
//! [`crate::Store::list_runs`] and the id range a typed run-id prefix stands for.

/// Page size of [`crate::Store::list_runs`] when the query names none.
pub(crate) const DEFAULT_PAGE: usize = 100;

/// The smallest and largest 16-byte ids whose 26-character text starts with
/// `prefix` (Crockford base32, any case); `None` when no id can.
pub(crate) fn id_prefix_range(prefix: &str) -> Option<([u8; 16], [u8; 16])> {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let prefix = prefix.trim().as_bytes();
    if prefix.len() > 26 {
        return None;
    }
    let (mut low, mut high) = (0u128, 0u128);
    for i in 0..26 {
        // The first character carries only the top 3 of the 128 bits.
        let max = if i == 0 { 7 } else { 31 };
        let (lo, hi) = match prefix.get(i) {
            Some(c) => {
                let v = ALPHABET.iter().position(|a| *a == c.to_ascii_uppercase())? as u128;
                if v > max {
                    return None;
                }
                (v, v)
            }
            None => (0, max),
        };
        low = (low << 5) | lo;
        high = (high << 5) | hi;
    }
    Some((low.to_be_bytes(), high.to_be_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::RunId;

    #[test]
    fn id_prefix_ranges_cover_exactly_the_ids_with_that_prefix() {
        let id = RunId::from_bytes([0x01, 0x9A, 0x3C, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42]);
        let text = id.to_string();
        for len in 0..=26 {
            for prefix in [text[..len].to_owned(), text[..len].to_ascii_lowercase()] {
                let (lo, hi) = id_prefix_range(&prefix).unwrap();
                assert!(lo <= id.to_bytes() && id.to_bytes() <= hi, "{prefix}");
                assert!(RunId::from_bytes(lo).to_string().starts_with(&text[..len]));
                assert!(RunId::from_bytes(hi).to_string().starts_with(&text[..len]));
            }
        }
        assert_eq!(id_prefix_range(""), Some(([0; 16], [0xFF; 16])));
        assert_eq!(id_prefix_range("8"), None, "the first character is at most 7");
        assert_eq!(id_prefix_range("0U"), None, "U is not Crockford base32");
        assert_eq!(id_prefix_range(&"0".repeat(27)), None);
    }
}

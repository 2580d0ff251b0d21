//! Session ids: 128 random bits from the operating system, written as 32 lowercase hex digits,
//! compared in constant time.

use std::hash::{Hash, Hasher};

/// Bytes in an id (128 bits).
const LEN: usize = 16;

/// Characters of an id in a cookie.
pub(crate) const HEX_LEN: usize = 2 * LEN;

/// A session id. Equality takes the same time whatever the bytes, so a registry lookup does not
/// tell an attacker how much of a guessed id was right.
#[derive(Clone, Copy)]
pub(crate) struct SessionId([u8; LEN]);

impl SessionId {
    /// A fresh id from the operating system's random source.
    pub(crate) fn random() -> Result<SessionId, getrandom::Error> {
        let mut bytes = [0u8; LEN];
        getrandom::fill(&mut bytes)?;
        Ok(SessionId(bytes))
    }

    /// Read an id as this module writes it: exactly 32 lowercase hex digits. Anything else is no
    /// id at all (`None`), so there is one spelling of each id.
    pub(crate) fn parse(text: &[u8]) -> Option<SessionId> {
        if text.len() != HEX_LEN {
            return None;
        }
        let mut bytes = [0u8; LEN];
        for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
            *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Some(SessionId(bytes))
    }

    /// The id as 32 lowercase hex digits.
    pub(crate) fn to_hex(self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(HEX_LEN);
        for byte in self.0 {
            text.push(char::from(DIGITS[usize::from(byte >> 4)]));
            text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        text
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// `a == b`, looking at every byte whatever the differences.
pub(crate) fn constant_time_eq(a: &[u8; LEN], b: &[u8; LEN]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // Keep the compiler from turning the loop back into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

impl PartialEq for SessionId {
    fn eq(&self, other: &SessionId) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

impl Eq for SessionId {}

impl Hash for SessionId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The registry's hasher is keyed at random per map, so bucket timing tells nothing.
        self.0.hash(state);
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // An id is a secret: never in logs.
        f.write_str("SessionId(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_one_spelling() {
        let id = SessionId::random().unwrap();
        let hex = id.to_hex();
        assert_eq!(hex.len(), 32);
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert!(SessionId::parse(hex.as_bytes()) == Some(id));
        assert!(SessionId::parse(b"0123456789abcdef0123456789abcdef").is_some());
        assert!(SessionId::parse(b"0123456789ABCDEF0123456789abcdef").is_none());
        assert!(SessionId::parse(&hex.as_bytes()[1..]).is_none());
        assert!(SessionId::parse(format!("{hex}0").as_bytes()).is_none());
        assert!(SessionId::parse(b"0123456789abcdef0123456789abcdeg").is_none());
        assert!(SessionId::parse("é123456789abcdef0123456789abcde".as_bytes()).is_none());
    }

    #[test]
    fn equality_is_by_value() {
        let a = [7u8; LEN];
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[LEN - 1] ^= 1;
        assert!(!constant_time_eq(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!constant_time_eq(&a, &b));
    }

    #[test]
    fn random_ids_differ() {
        let a = SessionId::random().unwrap();
        let b = SessionId::random().unwrap();
        assert!(a != b);
    }
}

//! GPT-2's byte-to-unicode map: each of the 256 byte values stands for one printable char, so
//! byte strings can be written as text (a space is `Ġ`, a newline `Ċ`).

/// The char that stands for each byte value: printable Latin-1 bytes (`!`..`~`, `¡`..`¬`,
/// `®`..`ÿ`) stand for themselves, the other 68 take U+0100 upwards in byte order.
pub fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        let cp = if printable {
            b
        } else {
            n += 1;
            0xFF + n
        };
        // Every value is below U+0144, a valid scalar value.
        table[b as usize] = char::from_u32(cp).unwrap_or('\0');
    }
    table
}

/// The byte a char stands for, if it is one of the 256 chars of the map.
#[inline]
pub fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    match cp {
        0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => Some(cp as u8),
        0x100..=0x143 => {
            // The 68 non-printable bytes in order: 0x00..=0x20, 0x7F..=0xA0, 0xAD.
            let k = cp - 0x100;
            Some(match k {
                0..=32 => k as u8,
                33..=66 => (0x7F + (k - 33)) as u8,
                _ => 0xAD,
            })
        }
        _ => None,
    }
}

/// Bytes a token string stands for, as the `ByteLevel` decoder of `tokenizers` reads it: the
/// mapped bytes when every char is in the map, otherwise the string's own UTF-8 bytes.
pub fn token_to_bytes(token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    for c in token.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => return token.as_bytes().to_vec(),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_bytes() {
        let table = byte_to_char_table();
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(table[b as usize]), Some(b), "byte {b}");
        }
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[0xAD], '\u{143}');
        assert_eq!(char_to_byte('\u{144}'), None);
        assert_eq!(char_to_byte(' '), None);
    }

    #[test]
    fn tokens_to_bytes() {
        assert_eq!(token_to_bytes("ĠHello"), b" Hello");
        assert_eq!(token_to_bytes("<|eot_id|>"), b"<|eot_id|>");
        // A char outside the map: the token is taken as raw text.
        assert_eq!(token_to_bytes("a b"), b"a b");
    }
}

//! Number-shaped sensors: payment cards, US SSNs and IBANs. Triggered by a
//! run of four digits; the surrounding digit groups (joined by single spaces,
//! dashes or form-encoded `+`) are split into card- or SSN-shaped windows and
//! validated (IIN + length + Luhn, SSN area/group/serial rules, IBAN length
//! table + mod-97).

use crate::engine::{has_word, Block, Engine};
use crate::finding::mask_digits;
use crate::sensors::{Builtin, SensorRef};
use crate::validate;

/// Longest digit region considered; longer ones are tables of numbers.
const MAX_REGION: usize = 96;
const MAX_GROUPS: usize = 12;

/// Group sizes a formatted card number is printed in (beyond one plain run).
const CARD_LAYOUTS: &[&[usize]] = &[
    &[4, 4, 4, 4],
    &[4, 6, 5],
    &[4, 6, 4],
    &[4, 4, 4, 4, 3],
    &[4, 4, 4, 4, 2],
    &[4, 4, 4, 4, 1],
    &[4, 4, 4, 3],
    &[4, 4, 4, 2],
    &[4, 4, 4, 1],
    &[4, 4, 5],
    &[4, 4, 4],
];

/// Words that say a bare number is an identifier of something else.
const NOT_CARD_WORDS: &[&str] = &[
    "order",
    "invoice",
    "tracking",
    "txn",
    "transaction",
    "ref",
    "shipment",
    "ticket",
    "isbn",
    "phone",
    "tel",
    "serial",
];
const CARD_WORDS: &[&str] = &[
    "card",
    "cc",
    "pan",
    "visa",
    "amex",
    "mastercard",
    "credit",
    "debit",
    "payment",
];
const SSN_WORDS: &[&str] = &["ssn", "social", "taxpayer"];

fn is_sep(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'+')
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Handle a digit run at `p`; returns where scanning resumes.
pub(crate) fn on_digits(eng: &Engine, blk: &mut Block<'_>, p: usize) -> usize {
    let buf = blk.buf;
    // Expand left to the first group, right to the last, counting digits.
    let mut digits = 0;
    let mut s = p;
    loop {
        while s > 0 && buf[s - 1].is_ascii_digit() {
            s -= 1;
            digits += 1;
        }
        if s >= 2 && is_sep(buf[s - 1]) && buf[s - 2].is_ascii_digit() && p - s < MAX_REGION {
            s -= 1;
        } else {
            break;
        }
    }
    let mut e = p;
    loop {
        while e < buf.len() && buf[e].is_ascii_digit() {
            e += 1;
            digits += 1;
        }
        if e + 1 < buf.len() && is_sep(buf[e]) && buf[e + 1].is_ascii_digit() && e - s < MAX_REGION
        {
            e += 1;
        } else {
            break;
        }
    }
    if blk.cut(s) || e - s >= MAX_REGION {
        return e;
    }
    // Two bytes past the end decide a decimal point or a trailing separator.
    if !blk.ready(s.saturating_sub(1), e + 2) {
        return buf.len();
    }
    // Cards have 12+ digits, SSNs 9, IBANs at least 8 in a row of groups:
    // shorter numbers (years, prices, ports) are done with here.
    if digits < 8 {
        return e;
    }
    if eng.on(Builtin::Iban) {
        if let Some(end) = iban_at(blk, p) {
            return end;
        }
    }
    if !eng.on(Builtin::CreditCard) && !eng.on(Builtin::Ssn) || digits < 9 {
        return e;
    }
    let mut groups = [(0usize, 0usize); MAX_GROUPS];
    let mut n = 0;
    let mut i = s;
    while i < e {
        let g0 = i;
        while i < e && buf[i].is_ascii_digit() {
            i += 1;
        }
        if n == MAX_GROUPS {
            return e;
        }
        groups[n] = (g0, i);
        n += 1;
        i += 1; // separator
    }
    let groups = &groups[..n];
    // Groups glued to letters, `_` or a decimal point belong to another token.
    let mut first = 0;
    let mut last = n;
    // `x-1234…` / `…1234-x`: part of a hyphenated token (a Slack token, a
    // UUID); `1.5`: a decimal.
    let left_glued = blk.prev(s).is_some_and(is_word)
        || (matches!(blk.prev(s), Some(b'.' | b'-'))
            && s >= 2
            && buf[s - 2].is_ascii_alphanumeric());
    let right_glued = blk.byte(e).is_some_and(is_word)
        || (matches!(blk.byte(e), Some(b'.' | b'-'))
            && blk.byte(e + 1).is_some_and(|c| c.is_ascii_alphanumeric()));
    if left_glued {
        if n > 1 && buf[groups[0].1] == b'-' {
            return e; // hyphenated identifier (UUID, serial)
        }
        first = 1;
    }
    if right_glued && last > first {
        if n > 1 && buf[groups[n - 1].0 - 1] == b'-' {
            return e;
        }
        last -= 1;
    }
    let mut a = first;
    while a < last {
        let mut taken = 0;
        for k in (1..=(last - a).min(5)).rev() {
            if window(eng, blk, &groups[a..a + k], e) {
                taken = k;
                break;
            }
        }
        a += taken.max(1);
    }
    e
}

/// Try one window of groups as a card or an SSN; true if it produced a hit.
fn window(eng: &Engine, blk: &mut Block<'_>, gs: &[(usize, usize)], region_end: usize) -> bool {
    let buf = blk.buf;
    let (ws, we) = (gs[0].0, gs[gs.len() - 1].1);
    if gs.len() > 1 {
        let sep = buf[gs[0].1];
        if gs
            .windows(2)
            .any(|w| buf[w[0].1] != sep || w[1].0 - w[0].1 != 1)
        {
            return false;
        }
    }
    let mut size_buf = [0usize; 5];
    for (slot, g) in size_buf.iter_mut().zip(gs) {
        *slot = g.1 - g.0;
    }
    let sizes = &size_buf[..gs.len()];
    let mut digits = [0u8; 24];
    let mut nd = 0;
    for &(g0, g1) in gs {
        if nd + (g1 - g0) > digits.len() {
            return false;
        }
        digits[nd..nd + g1 - g0].copy_from_slice(&buf[g0..g1]);
        nd += g1 - g0;
    }
    let d = &digits[..nd];
    let needs = region_end + 2;
    if eng.on(Builtin::CreditCard) {
        let shaped = if gs.len() == 1 {
            (12..=19).contains(&nd)
        } else {
            CARD_LAYOUTS.contains(&sizes)
        };
        if shaped && validate::card_brand(d).is_some() && validate::luhn(d) {
            let before = field_context(blk, ws, 32);
            let id_like =
                gs.len() == 1 && has_word(before, NOT_CARD_WORDS) && !has_word(before, CARD_WORDS);
            if !id_like {
                let masked = mask_digits(&buf[ws..we], 4, 4);
                blk.hit(
                    SensorRef::Builtin(Builtin::CreditCard),
                    ws,
                    we,
                    needs,
                    masked,
                );
                return true;
            }
        }
    }
    if eng.on(Builtin::Ssn) && nd == 9 && validate::ssn(d) {
        let formatted = sizes == [3, 2, 4].as_slice() && matches!(buf[gs[0].1], b'-' | b' ');
        let plain = gs.len() == 1 && has_word(field_context(blk, ws, 48), SSN_WORDS);
        if formatted || plain {
            let masked = mask_digits(&buf[ws..we], 0, 4);
            blk.hit(SensorRef::Builtin(Builtin::Ssn), ws, we, needs, masked);
            return true;
        }
    }
    false
}

/// The text before a value back to the previous field separator: the
/// value's own key, not a neighbour's (`"ssn":"…","routing":"<here>"`).
fn field_context<'a>(blk: &Block<'a>, at: usize, n: usize) -> &'a [u8] {
    let w = blk.window_before(at, n);
    match w.iter().rposition(|&c| matches!(c, b',' | b'&' | b';')) {
        Some(i) => &w[i + 1..],
        None => w,
    }
}

/// Look for an IBAN whose country code begins at most 42 bytes before `p`.
/// Returns the IBAN's end when one validated.
fn iban_at(blk: &mut Block<'_>, p: usize) -> Option<usize> {
    let buf = blk.buf;
    // Walk left over `[A-Z0-9]` and single spaces.
    let mut s = p;
    while s > 0 && p - s < 42 {
        let c = buf[s - 1];
        if c.is_ascii_uppercase()
            || c.is_ascii_digit()
            || (matches!(c, b' ' | b'+') && s >= 2 && !matches!(buf[s - 2], b' ' | b'+'))
        {
            s -= 1;
        } else {
            break;
        }
    }
    let mut q = s;
    while q + 4 <= p + 4 && q + 4 <= buf.len() {
        let boundary = q == 0 || !buf[q - 1].is_ascii_alphanumeric() && buf[q - 1] != b'+';
        if boundary
            && buf[q].is_ascii_uppercase()
            && buf[q + 1].is_ascii_uppercase()
            && buf[q + 2].is_ascii_digit()
            && buf[q + 3].is_ascii_digit()
        {
            if let Some(want) = validate::iban_length(&buf[q..q + 2]) {
                match read_iban(blk, q, want) {
                    Ok(Some(end)) => return Some(end),
                    Ok(None) => {}
                    Err(()) => return Some(buf.len()),
                }
            }
        }
        q += 1;
    }
    None
}

/// Read `want` IBAN characters from `q`, compact or grouped by four with
/// single spaces. `Err` when more bytes are needed.
fn read_iban(blk: &mut Block<'_>, q: usize, want: usize) -> Result<Option<usize>, ()> {
    let buf = blk.buf;
    // Grouped by four with spaces, or with `+` once form-encoded.
    let sep = buf.get(q + 4).copied().filter(|&c| c == b' ' || c == b'+');
    let grouped = sep.is_some();
    let mut compact = [0u8; 34];
    let mut n = 0;
    let mut i = q;
    while n < want {
        let Some(&c) = buf.get(i) else {
            return if blk.ready(q, i + 1) {
                Ok(None)
            } else {
                Err(())
            };
        };
        if grouped && n > 0 && n % 4 == 0 && Some(c) == sep {
            i += 1;
            continue;
        }
        if !(c.is_ascii_uppercase() || c.is_ascii_digit()) {
            return Ok(None);
        }
        compact[n] = c;
        n += 1;
        i += 1;
    }
    if !blk.ready(q, i + 2) {
        return Err(());
    }
    // Must end here: no further IBAN characters glued on.
    let after = blk.byte(i);
    let glued = after.is_some_and(|c| c.is_ascii_alphanumeric());
    if glued || !validate::iban(&compact[..n]) {
        return Ok(None);
    }
    let masked = mask_digits(&buf[q..i], 4, 4);
    blk.hit(SensorRef::Builtin(Builtin::Iban), q, i, i + 2, masked);
    Ok(Some(i))
}

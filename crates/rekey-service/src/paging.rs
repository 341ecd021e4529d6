//! Keyset pagination shared by the list use cases: the `limit` rule, the
//! opaque cursor (the last id of a page, base64url) and the "one more row
//! than asked" test for a next page.

use base64::Engine;
use rekey_core::{ids, Error, ErrorCode};

/// `limit` between 1 and `max`, 50 when absent.
pub(crate) fn limit(l: Option<i64>, max: i64) -> Result<i64, Error> {
    match l {
        None => Ok(50.min(max)),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(Error::invalid(
            ErrorCode::InvalidLimit,
            format!("`limit` must be between 1 and {max}"),
        )),
    }
}

pub(crate) fn bad_cursor() -> Error {
    Error::invalid(
        ErrorCode::InvalidCursor,
        "`cursor` is not a cursor returned by this endpoint",
    )
}

/// The id a cursor of [`next_cursor`] carries, checked to be an id with
/// `prefix`.
pub(crate) fn after_id(cursor: Option<&str>, prefix: &str) -> Result<Option<String>, Error> {
    let Some(c) = cursor else { return Ok(None) };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| bad_cursor())?;
    let s = String::from_utf8(raw).map_err(|_| bad_cursor())?;
    ids::parse_id(prefix, &s)
        .map(Some)
        .map_err(|_| bad_cursor())
}

/// Rows were fetched with `limit + 1`: keep `limit` and return the cursor
/// of the next page when there is one.
pub(crate) fn next_cursor<T>(
    rows: &mut Vec<T>,
    limit: i64,
    id: impl Fn(&T) -> &str,
) -> Option<String> {
    if rows.len() as i64 <= limit {
        return None;
    }
    rows.truncate(limit as usize);
    rows.last().map(|r| cursor_of(id(r)))
}

/// The cursor that continues after `id`.
pub(crate) fn cursor_of(id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let id = ids::new_id(ids::CONNECTION);
        let mut rows = vec![id.clone(), ids::new_id(ids::CONNECTION)];
        let c = next_cursor(&mut rows, 1, |s| s.as_str()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(after_id(Some(&c), ids::CONNECTION).unwrap(), Some(id));
        assert!(after_id(Some(&c), ids::WEBHOOK).is_err());
        assert!(after_id(Some("%%"), ids::CONNECTION).is_err());
        assert_eq!(next_cursor(&mut rows, 1, |s| s.as_str()), None);
        assert_eq!(limit(None, 200).unwrap(), 50);
        assert_eq!(limit(Some(500), 500).unwrap(), 500);
        assert_eq!(limit(Some(0), 200).unwrap_err().code(), "invalid_limit");
    }
}

//! Evidence exports on the wire: the query, the columns of a row, the
//! record an export leaves in the audit chain, and the seal line that
//! ends every export file.
//!
//! A file is sealed by its last line, which names the export and carries
//! the SHA-256 of every byte before that line:
//!
//! - CSV: `# seal,evd_…,sha256:<64 hex>`
//! - JSON: `"seal":{"id":"evd_…","sha256":"<64 hex>"}}` (the previous line
//!   ends with a comma, so the whole file is one JSON object).
//!
//! The same SHA-256 is in the audit chain (`evidence.exported`, target the
//! export id), so `rekey evidence verify FILE` can show the file unaltered.

use crate::ConnectionQuery;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `GET /api/v1/evidence`: the connection filter, and the file format.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EvidenceQuery {
    /// `csv` (the default) or `json`.
    pub format: Option<String>,
    pub provider: Option<String>,
    #[param(value_type = Option<crate::enums::ConnectionKind>)]
    pub kind: Option<String>,
    #[param(value_type = Option<crate::enums::ConnectionStatus>)]
    pub status: Option<String>,
    pub tag: Option<String>,
    pub custody: Option<String>,
    /// Owner subject id or email (exact match).
    pub owner: Option<String>,
    /// Case-insensitive substring of the display name, owner email or id.
    pub q: Option<String>,
    /// RFC 3339: created strictly before.
    pub created_before: Option<String>,
    /// RFC 3339: not rotated since.
    pub rotated_before: Option<String>,
    /// OAuth grants made through this integration (`int_…`; must exist).
    pub integration: Option<String>,
    /// RFC 3339: the credential was read at or after this time.
    pub last_read_after: Option<String>,
    /// The connections of this campaign's plan (`cmp_…`; must exist); the
    /// file then also holds the campaign and its timeline.
    pub campaign: Option<String>,
}

impl EvidenceQuery {
    /// An export of the connections `filter` selects (its cursor and limit
    /// do not apply), in `format`.
    pub fn new(filter: ConnectionQuery, format: Option<String>) -> EvidenceQuery {
        EvidenceQuery {
            format,
            provider: filter.provider,
            kind: filter.kind,
            status: filter.status,
            tag: filter.tag,
            custody: filter.custody,
            owner: filter.owner,
            q: filter.q,
            created_before: filter.created_before,
            rotated_before: filter.rotated_before,
            integration: filter.integration,
            last_read_after: filter.last_read_after,
            campaign: None,
        }
    }

    /// The connection filter this export applies.
    pub fn filter(&self) -> ConnectionQuery {
        ConnectionQuery {
            provider: self.provider.clone(),
            kind: self.kind.clone(),
            status: self.status.clone(),
            tag: self.tag.clone(),
            custody: self.custody.clone(),
            owner: self.owner.clone(),
            q: self.q.clone(),
            created_before: self.created_before.clone(),
            rotated_before: self.rotated_before.clone(),
            integration: self.integration.clone(),
            last_read_after: self.last_read_after.clone(),
            cursor: None,
            limit: None,
        }
    }

    /// The filters set, by name, in a fixed order (the export's header).
    pub fn filters_set(&self) -> Vec<(&'static str, &str)> {
        [
            ("provider", &self.provider),
            ("kind", &self.kind),
            ("status", &self.status),
            ("tag", &self.tag),
            ("custody", &self.custody),
            ("owner", &self.owner),
            ("q", &self.q),
            ("created_before", &self.created_before),
            ("rotated_before", &self.rotated_before),
            ("integration", &self.integration),
            ("last_read_after", &self.last_read_after),
            ("campaign", &self.campaign),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

/// One connection in an evidence export. Times are RFC 3339; lists are
/// joined with spaces (scopes, custody) or ` | ` (confirmations). Never a
/// secret value: fingerprints name credentials without revealing them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EvidenceRow {
    pub connection_id: String,
    pub provider: String,
    pub kind: String,
    pub display_name: String,
    /// The connection's status now.
    pub status: String,
    /// Where the response stands for this connection: `not_revoked`,
    /// `revocation_open` (manual steps left), `awaiting_verification`,
    /// `verified_rejected`, `still_accepted` or `unverifiable`.
    pub outcome: String,
    /// The owner's email, else subject id.
    pub owner: String,
    pub custody: String,
    /// The scopes the revoked credential carried.
    pub scopes_before: String,
    /// The scopes the connection's credential carries now.
    pub scopes_after: String,
    /// How many times the connection was revoked (the columns below are the newest).
    pub revocations: String,
    pub revocation_id: String,
    pub old_fingerprint: String,
    /// `provider` (rekey revoked it through the provider's API) or `manual`.
    pub revocation_method: String,
    pub revocation_requested_at: String,
    pub revocation_requested_by: String,
    pub revoked_at: String,
    pub revoked_by: String,
    /// `verified_rejected`, `still_accepted`, `unverifiable`, or empty.
    pub verdict: String,
    pub verified_at: String,
    pub verification_attempts: String,
    /// Where the old credential was tried: the probe URL the connection
    /// had when it was revoked, else its parameters then (a database's
    /// host), else the catalog's probe for the provider.
    pub verified_against: String,
    /// The provider's last answer to the old credential: HTTP status,
    /// code, message and the scrubbed body.
    pub provider_answer: String,
    /// The runbook steps confirmed: who, when, and the note.
    pub confirmations: String,
    /// The credential consumers get now.
    pub current_fingerprint: String,
    /// The credential that replaced the revoked one (empty if none did).
    pub new_fingerprint: String,
    /// What made it: `created`, `replaced`, `reauthorized`, `rotation`…
    pub new_credential_source: String,
    pub new_credential_at: String,
    pub new_credential_by: String,
    /// The provider identity that reauthorized (the connection's owner),
    /// when the new credential came from a reauthorization.
    pub reauthorized_identity: String,
    /// A health probe's last success with the current credential.
    pub verified_working_at: String,
}

impl EvidenceRow {
    /// The CSV columns, in order (the JSON keys are the same).
    pub const COLUMNS: [&'static str; 31] = [
        "connection_id",
        "provider",
        "kind",
        "display_name",
        "status",
        "outcome",
        "owner",
        "custody",
        "scopes_before",
        "scopes_after",
        "revocations",
        "revocation_id",
        "old_fingerprint",
        "revocation_method",
        "revocation_requested_at",
        "revocation_requested_by",
        "revoked_at",
        "revoked_by",
        "verdict",
        "verified_at",
        "verification_attempts",
        "verified_against",
        "provider_answer",
        "confirmations",
        "current_fingerprint",
        "new_fingerprint",
        "new_credential_source",
        "new_credential_at",
        "new_credential_by",
        "reauthorized_identity",
        "verified_working_at",
    ];

    /// The cells, in [`Self::COLUMNS`] order.
    pub fn cells(&self) -> [&str; 31] {
        [
            &self.connection_id,
            &self.provider,
            &self.kind,
            &self.display_name,
            &self.status,
            &self.outcome,
            &self.owner,
            &self.custody,
            &self.scopes_before,
            &self.scopes_after,
            &self.revocations,
            &self.revocation_id,
            &self.old_fingerprint,
            &self.revocation_method,
            &self.revocation_requested_at,
            &self.revocation_requested_by,
            &self.revoked_at,
            &self.revoked_by,
            &self.verdict,
            &self.verified_at,
            &self.verification_attempts,
            &self.verified_against,
            &self.provider_answer,
            &self.confirmations,
            &self.current_fingerprint,
            &self.new_fingerprint,
            &self.new_credential_source,
            &self.new_credential_at,
            &self.new_credential_by,
            &self.reauthorized_identity,
            &self.verified_working_at,
        ]
    }
}

/// A cell as a spreadsheet should show it: text that a spreadsheet would
/// run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage
/// return) gets a leading `'`, as OWASP's CSV-injection advice says.
pub fn csv_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// `GET /api/v1/evidence/{id}`: what the audit chain recorded of an export.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EvidenceRecordView {
    pub id: String,
    /// SHA-256 (hex) of the file up to its seal line.
    pub sha256: String,
    pub format: String,
    pub generated_at: String,
    pub generated_by: String,
    pub rows: u64,
    /// Connections per outcome.
    #[schema(value_type = Object)]
    pub counts: serde_json::Value,
    /// The filters the export applied.
    #[schema(value_type = Object)]
    pub filter: serde_json::Value,
    /// The audit entry that holds the record.
    pub audit_seq: i64,
    /// The audit chain is intact (walked in full for this answer).
    pub chain_intact: bool,
    pub chain_message: String,
}

/// A file's seal line, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub id: String,
    pub sha256: String,
    /// How many bytes of the file the SHA-256 covers (all before the seal line).
    pub sealed_len: usize,
}

/// The CSV seal line (with its newline).
pub fn csv_seal(id: &str, sha256: &str) -> String {
    format!("# seal,{id},sha256:{sha256}\n")
}

/// The JSON seal line (with its newline), closing the document.
pub fn json_seal(id: &str, sha256: &str) -> String {
    format!("\"seal\":{{\"id\":\"{id}\",\"sha256\":\"{sha256}\"}}}}\n")
}

/// Find and read the seal line of an export file.
pub fn read_seal(file: &[u8]) -> Result<Seal, String> {
    let body = file.strip_suffix(b"\n").unwrap_or(file);
    if body.ends_with(b"\r") {
        return Err(
            "the file's line endings were changed to CRLF (re-saved by an editor or \
             a spreadsheet?): keep the file as downloaded"
                .into(),
        );
    }
    let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let line = std::str::from_utf8(&body[start..])
        .map_err(|_| "the last line is not UTF-8 text".to_string())?;
    let (id, sha256) = if let Some(rest) = line.strip_prefix("# seal,") {
        let (id, h) = rest
            .split_once(",sha256:")
            .ok_or("the CSV seal line has no `sha256:` cell")?;
        (id.to_string(), h.to_string())
    } else if let Some(rest) = line.strip_prefix("\"seal\":") {
        #[derive(Deserialize)]
        struct J {
            id: String,
            sha256: String,
        }
        let obj = rest
            .strip_suffix('}')
            .ok_or("the JSON seal line does not close the document")?;
        let j: J = serde_json::from_str(obj).map_err(|e| format!("the JSON seal line: {e}"))?;
        (j.id, j.sha256)
    } else {
        return Err(
            "no seal line: the last line of an evidence export starts with `# seal,` (CSV) \
             or `\"seal\":` (JSON); was the file cut short or re-saved?"
                .into(),
        );
    };
    let hex_ok = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex_ok {
        return Err("the seal's sha256 is not 64 hex digits".into());
    }
    // The seal line is not covered by the hash: it must be exactly the
    // line rekey writes, so nothing can be added to it unnoticed.
    let exact = if line.starts_with('#') {
        csv_seal(&id, &sha256)
    } else {
        json_seal(&id, &sha256)
    };
    if &file[start..] != exact.as_bytes() || sha256.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("the seal line is not the one rekey writes (edited?)".into());
    }
    Ok(Seal {
        id,
        sha256,
        sealed_len: start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_escaped() {
        for bad in ["=SUM(A1)", "+1", "-2+3", "@cmd", "\tx", "\rx"] {
            assert!(csv_safe(bad).starts_with('\''), "{bad:?}");
        }
        for ok in ["salesforce", "", "a=b", "1-2", "kh:abc"] {
            assert_eq!(csv_safe(ok), ok);
        }
    }

    #[test]
    fn columns_are_the_json_keys() {
        let v = serde_json::to_value(EvidenceRow::default()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut cols = EvidenceRow::COLUMNS.to_vec();
        cols.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(cols, keys);
    }

    #[test]
    fn seals_read_back() {
        let h = "ab".repeat(32);
        let csv = format!("a,b\n1,2\n{}", csv_seal("evd_1", &h));
        let s = read_seal(csv.as_bytes()).unwrap();
        assert_eq!((s.id.as_str(), s.sha256.as_str()), ("evd_1", h.as_str()));
        assert_eq!(&csv[..s.sealed_len], "a,b\n1,2\n");
        let json = format!("{{\"rows\":[],\n{}", json_seal("evd_2", &h));
        let s = read_seal(json.as_bytes()).unwrap();
        assert_eq!(s.id, "evd_2");
        assert_eq!(&json[..s.sealed_len], "{\"rows\":[],\n");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["seal"]["sha256"], h.as_str());
        assert!(read_seal(b"a,b\n1,2\n").is_err());
        assert!(read_seal(b"# seal,evd_1,sha256:xyz\n").is_err());
        // The seal line byte for byte: no extra field, case or missing newline.
        let upper = format!("a\n{}", csv_seal("evd_1", &h.to_uppercase()));
        assert!(read_seal(upper.as_bytes()).is_err());
        assert!(read_seal(csv.trim_end_matches('\n').as_bytes()).is_err());
        let extra = json.replace("\"sha256\"", "\"note\":\"ok\",\"sha256\"");
        assert!(read_seal(extra.as_bytes()).is_err());
        let crlf = csv.replace('\n', "\r\n");
        assert!(read_seal(crlf.as_bytes()).unwrap_err().contains("CRLF"));
    }
}

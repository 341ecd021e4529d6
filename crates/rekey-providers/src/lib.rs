//! The provider catalog: one TOML file per provider under `providers/` at the
//! repository root, embedded in the binary at build time and validated at
//! start. A bad entry stops the server with the file, field and reason.
//!
//! Invariant: data, not code. Nothing here performs I/O against providers.

use include_dir::{include_dir, Dir};
use rekey_core::connection::ConnectionKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

static EMBEDDED: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../../providers");

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    /// `api`: rekey can do it through the provider's API; `manual`: an
    /// operator follows `steps` and confirms.
    pub method: RunbookMethod,
    #[serde(default)]
    pub steps: Vec<String>,
    /// Rotation only: whether old and new credentials can be valid at the
    /// same time (two keys/slots), so rotation has no downtime.
    #[serde(default)]
    pub overlap: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RunbookMethod {
    Api,
    Manual,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub id: String,
    pub display_name: String,
    pub category: String,
    pub docs_url: String,
    pub auth_kinds: Vec<String>,
    pub revoke: Runbook,
    pub rotate: Runbook,
    #[serde(default)]
    pub pitfalls: Vec<String>,
}

impl Provider {
    pub fn supports(&self, kind: ConnectionKind) -> bool {
        self.auth_kinds.iter().any(|k| k == kind.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("provider catalog: {file}: {field}: {reason}")]
pub struct CatalogError {
    pub file: String,
    pub field: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    providers: BTreeMap<String, Provider>,
}

fn fail(file: &str, field: &str, reason: impl Into<String>) -> CatalogError {
    CatalogError {
        file: file.to_string(),
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// Parse and validate one entry. `file` names it in errors; its stem must be the id.
pub fn parse_entry(file: &str, text: &str) -> Result<Provider, CatalogError> {
    let p: Provider = toml::from_str(text).map_err(|e| {
        let msg = e.message().to_string();
        // toml names the offending key in the message; keep the span as a line.
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let field = match line {
            Some(l) => format!("line {l}"),
            None => "document".to_string(),
        };
        fail(file, &field, msg)
    })?;
    validate(file, &p)?;
    Ok(p)
}

fn validate(file: &str, p: &Provider) -> Result<(), CatalogError> {
    rekey_core::ids::validate_slug("id", &p.id, 64).map_err(|e| fail(file, "id", e.to_string()))?;
    let stem = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("");
    if stem != p.id {
        return Err(fail(
            file,
            "id",
            format!("must equal the file name `{stem}`"),
        ));
    }
    if p.display_name.trim().is_empty() {
        return Err(fail(file, "display_name", "must not be empty"));
    }
    rekey_core::ids::validate_slug("category", &p.category, 64)
        .map_err(|e| fail(file, "category", e.to_string()))?;
    check_url(file, "docs_url", &p.docs_url)?;
    if p.auth_kinds.is_empty() {
        return Err(fail(file, "auth_kinds", "must list at least one kind"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, k) in p.auth_kinds.iter().enumerate() {
        let field = format!("auth_kinds[{i}]");
        k.parse::<ConnectionKind>()
            .map_err(|e| fail(file, &field, e.to_string()))?;
        if !seen.insert(k) {
            return Err(fail(file, &field, format!("`{k}` is listed twice")));
        }
    }
    for (name, rb) in [("revoke", &p.revoke), ("rotate", &p.rotate)] {
        if rb.method == RunbookMethod::Manual && rb.steps.is_empty() {
            return Err(fail(
                file,
                &format!("{name}.steps"),
                "a manual runbook needs at least one step",
            ));
        }
        for (i, s) in rb.steps.iter().enumerate() {
            if s.trim().is_empty() {
                return Err(fail(
                    file,
                    &format!("{name}.steps[{i}]"),
                    "must not be empty",
                ));
            }
        }
        if name == "revoke" && rb.overlap.is_some() {
            return Err(fail(file, "revoke.overlap", "only applies to rotation"));
        }
    }
    Ok(())
}

fn check_url(file: &str, field: &str, url: &str) -> Result<(), CatalogError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| fail(file, field, "must be an https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || !host.contains('.') || host.contains(char::is_whitespace) {
        return Err(fail(file, field, "must be an https:// URL with a host"));
    }
    Ok(())
}

impl Catalog {
    /// The catalog compiled into this binary from `providers/`.
    pub fn embedded() -> Result<Catalog, CatalogError> {
        let files = EMBEDDED
            .files()
            .filter(|f| f.path().extension().and_then(|e| e.to_str()) == Some("toml"))
            .map(|f| {
                let name = format!("providers/{}", f.path().display());
                let text = f
                    .contents_utf8()
                    .ok_or_else(|| fail(&name, "document", "not UTF-8"))?;
                Ok((name, text.to_string()))
            })
            .collect::<Result<Vec<_>, CatalogError>>()?;
        Catalog::from_files(files)
    }

    /// Load every `*.toml` in `dir` (an operator-supplied catalog).
    pub fn load_dir(dir: &Path) -> Result<Catalog, CatalogError> {
        let d = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| fail(&d, "directory", e.to_string()))?;
        let mut files = Vec::new();
        for e in entries {
            let path = e.map_err(|e| fail(&d, "directory", e.to_string()))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let name = path.display().to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| fail(&name, "document", e.to_string()))?;
            files.push((name, text));
        }
        Catalog::from_files(files)
    }

    pub fn from_files(mut files: Vec<(String, String)>) -> Result<Catalog, CatalogError> {
        files.sort();
        let mut providers = BTreeMap::new();
        for (name, text) in files {
            let p = parse_entry(&name, &text)?;
            if providers.contains_key(&p.id) {
                return Err(fail(
                    &name,
                    "id",
                    format!("duplicate provider id `{}`", p.id),
                ));
            }
            providers.insert(p.id.clone(), p);
        }
        if providers.is_empty() {
            return Err(fail("providers/", "directory", "no provider entries found"));
        }
        Ok(Catalog { providers })
    }

    pub fn get(&self, id: &str) -> Option<&Provider> {
        self.providers.get(id)
    }

    pub fn all(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values()
    }

    pub fn len(&self) -> usize {
        self.providers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id = "acme"
display_name = "Acme"
category = "crm"
docs_url = "https://docs.acme.example/api"
auth_kinds = ["api_key"]
[revoke]
method = "manual"
steps = ["Delete the key in Acme → Settings → API"]
[rotate]
method = "manual"
overlap = true
steps = ["Create a new key", "Update rekey", "Delete the old key"]
"#;

    #[test]
    fn embedded_catalog_is_valid() {
        let c = Catalog::embedded().unwrap();
        assert!(c.len() >= 5);
        for p in c.all() {
            assert!(
                !p.revoke.steps.is_empty() || p.revoke.method == RunbookMethod::Api,
                "{}",
                p.id
            );
        }
    }

    #[test]
    fn good_entry_parses() {
        let p = parse_entry("providers/acme.toml", GOOD).unwrap();
        assert!(p.supports(ConnectionKind::ApiKey));
        assert!(!p.supports(ConnectionKind::Basic));
    }

    #[test]
    fn bad_entries_name_file_and_field() {
        let cases = [
            (GOOD.replace("\"api_key\"", "\"api-key\""), "auth_kinds[0]"),
            (GOOD.replace("https://docs", "http://docs"), "docs_url"),
            (GOOD.replace("id = \"acme\"", "id = \"other\""), "id"),
            (
                GOOD.replace("category = \"crm\"", "category = \"crm\"\nlogo = 1"),
                "line",
            ),
            (
                GOOD.replace(
                    "auth_kinds = [\"api_key\"]",
                    "auth_kinds = [\"api_key\", \"api_key\"]",
                ),
                "auth_kinds[1]",
            ),
            (
                GOOD.replace("steps = [\"Delete the key in Acme → Settings → API\"]", ""),
                "revoke.steps",
            ),
        ];
        for (text, field) in cases {
            let e = parse_entry("providers/acme.toml", &text).unwrap_err();
            assert_eq!(e.file, "providers/acme.toml");
            assert!(e.field.starts_with(field), "{e} (wanted {field})");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse_entry(
            "providers/acme.toml",
            &GOOD.replace("category = \"crm\"", "category = \"crm\"\nlogo = 1"),
        )
        .unwrap_err();
        assert!(e.reason.contains("logo"), "{e}");
    }

    #[test]
    fn duplicate_ids_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("acme.toml"), GOOD).unwrap();
        assert_eq!(Catalog::load_dir(dir.path()).unwrap().len(), 1);
        let e = Catalog::from_files(vec![
            ("a/acme.toml".into(), GOOD.into()),
            ("b/acme.toml".into(), GOOD.into()),
        ])
        .unwrap_err();
        assert!(e.reason.contains("duplicate"));
    }
}

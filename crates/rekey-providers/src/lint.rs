//! `rekey providers lint [DIR]`: check a catalog directory and report every
//! problem at once, not only the first. Errors are what stops the server
//! from starting; warnings are gaps that make an entry less useful (no
//! probe, no Connect form, no documentation reference) — the shipped
//! catalog has none of either.

use crate::{parse_entry, Catalog, CatalogError, Provider, STATIC_KINDS};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, named by file and field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LintFinding {
    pub severity: Severity,
    pub file: String,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for LintFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}: {}: {}", self.file, self.field, self.message)
    }
}

impl From<CatalogError> for LintFinding {
    fn from(e: CatalogError) -> Self {
        LintFinding {
            severity: Severity::Error,
            file: e.file,
            field: e.field,
            message: e.reason,
        }
    }
}

fn warn(file: &str, field: &str, message: impl Into<String>) -> LintFinding {
    LintFinding {
        severity: Severity::Warning,
        file: file.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

/// Completeness checks for a valid entry.
fn quality(file: &str, p: &Provider) -> Vec<LintFinding> {
    let mut out = Vec::new();
    if p.references.is_empty() {
        out.push(warn(
            file,
            "references",
            "cite the provider documentation this entry was checked against",
        ));
    }
    for param in &p.params {
        if !p.param_info.contains_key(param) {
            out.push(warn(
                file,
                &format!("param_info.{param}"),
                "give a label and an example so the Connect page can ask for it",
            ));
        }
        let used = {
            let mut urls: Vec<&str> = Vec::new();
            if let Some(o) = &p.oauth {
                urls.extend(o.urls().into_iter().filter_map(|(_, u)| u.as_deref()));
                urls.extend(o.default_scopes.iter().map(String::as_str));
                urls.extend(o.extra_authorize_params.values().map(String::as_str));
            }
            for pr in &p.probes {
                urls.extend(pr.url.as_deref());
                urls.extend(pr.host.as_deref());
                urls.extend(pr.port.as_deref());
                urls.extend(pr.database.as_deref());
                urls.extend(pr.headers.values().map(String::as_str));
            }
            for rb in [&p.revoke, &p.rotate] {
                urls.extend(rb.console_url.as_deref());
                urls.extend(rb.kinds.values().filter_map(|r| r.console_url.as_deref()));
            }
            urls.iter()
                .any(|u| crate::placeholders(u).iter().any(|x| x == param))
        };
        if !used {
            out.push(warn(
                file,
                "params",
                format!("`{param}` is declared but no URL uses it"),
            ));
        }
    }
    for kind in &p.auth_kinds {
        if STATIC_KINDS.contains(&kind.as_str()) && !p.key_forms.contains_key(kind) {
            out.push(warn(
                file,
                &format!("key_forms.{kind}"),
                "no Connect-page form for this kind",
            ));
        }
        if p.probe_for(kind).is_none() && p.probe_unavailable.is_none() {
            out.push(warn(
                file,
                "probe",
                format!("no health probe for `{kind}` (or say why in `probe_unavailable`)"),
            ));
        }
        let rb = p.rotate_for(kind);
        if rb.overlap.is_none() && rb.invalidates_old_immediately.is_none() {
            out.push(warn(
                file,
                &if p.rotate.kinds.contains_key(kind) {
                    format!("rotate.kinds.{kind}.overlap")
                } else {
                    "rotate.overlap".to_string()
                },
                format!("say whether old and new `{kind}` credentials can be valid together"),
            ));
        }
    }
    if let Some(o) = &p.oauth {
        if p.auth_kinds
            .iter()
            .any(|k| k == "oauth2_authorization_code")
            && o.identity_url.is_none()
            && o.issuer.is_none()
        {
            out.push(warn(
                file,
                "oauth.identity_url",
                "without an identity endpoint (or issuer) rekey cannot record who authorized, nor check that a reauthorization is by the same user",
            ));
        }
    }
    out
}

/// Lint named files (path, text). Every file is checked, duplicates across
/// files are reported, and warnings are added for valid entries.
pub fn lint_files(mut files: Vec<(String, String)>) -> Vec<LintFinding> {
    files.sort();
    let mut out = Vec::new();
    let mut catalog = Catalog::default();
    for (name, text) in &files {
        match parse_entry(name, text) {
            Err(e) => out.push(e.into()),
            Ok(p) => {
                let q = quality(name, &p);
                match catalog.insert(name, p) {
                    Err(e) => out.push(e.into()),
                    Ok(()) => out.extend(q),
                }
            }
        }
    }
    if files.is_empty() {
        out.push(LintFinding {
            severity: Severity::Error,
            file: "providers/".into(),
            field: "directory".into(),
            message: "no provider entries found".into(),
        });
    }
    out.sort_by(|a, b| (a.severity, &a.file, &a.field).cmp(&(b.severity, &b.file, &b.field)));
    out
}

/// Lint every `*.toml` in `dir`. `Err` only when the directory itself
/// cannot be read; unreadable files are reported as findings.
pub fn lint_dir(dir: &Path) -> Result<Vec<LintFinding>, CatalogError> {
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    for (name, text) in crate::toml_files_in(dir)? {
        match text {
            Ok(t) => files.push((name, t)),
            Err(e) => unreadable.push(LintFinding {
                severity: Severity::Error,
                file: name,
                field: "document".into(),
                message: e.to_string(),
            }),
        }
    }
    let mut out = if files.is_empty() && !unreadable.is_empty() {
        Vec::new()
    } else {
        lint_files(files)
    };
    out.extend(unreadable);
    out.sort_by(|a, b| (a.severity, &a.file, &a.field).cmp(&(b.severity, &b.file, &b.field)));
    Ok(out)
}

/// Lint the catalog compiled into this binary.
pub fn lint_embedded() -> Result<Vec<LintFinding>, CatalogError> {
    Ok(lint_files(crate::embedded_files()?))
}

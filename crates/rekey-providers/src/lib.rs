//! The provider catalog: one TOML file per provider under `providers/` at the
//! repository root, embedded in the binary at build time and validated at
//! start. A bad entry stops the server with the file, field and reason.
//!
//! Invariant: data, not code. Nothing here performs I/O against providers.

use include_dir::{include_dir, Dir};
use rekey_core::connection::ConnectionKind;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
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

/// How rekey talks OAuth 2.0 / OIDC to a provider. URLs may contain
/// `{placeholders}` declared in the provider's `params` (per-tenant hosts).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OAuthSpec {
    /// Authorization endpoint (authorization-code kind). Optional when `issuer` is set (discovery).
    pub authorize_url: Option<String>,
    /// Token endpoint. Optional when `issuer` is set (discovery).
    pub token_url: Option<String>,
    /// RFC 7009 revocation endpoint, if the provider has one.
    pub revocation_url: Option<String>,
    /// OpenID Connect issuer: endpoints are discovered from
    /// `{issuer}/.well-known/openid-configuration` and ID tokens are validated against it.
    pub issuer: Option<String>,
    /// Endpoint returning JSON about the authorizing user (userinfo or a provider API).
    pub identity_url: Option<String>,
    /// Dotted path of the user's stable id in the identity response (or ID token claims).
    #[serde(default = "default_subject_field")]
    pub identity_subject_field: String,
    /// Dotted path of the user's email.
    #[serde(default = "default_email_field")]
    pub identity_email_field: String,
    /// Dotted path of the user's display name.
    pub identity_name_field: Option<String>,
    #[serde(default)]
    pub default_scopes: Vec<String>,
    #[serde(default = "default_scope_separator")]
    pub scope_separator: String,
    /// Extra query parameters for the authorization request (e.g. `access_type = "offline"`).
    #[serde(default)]
    pub extra_authorize_params: BTreeMap<String, String>,
    /// Dotted path of the granted scopes in the token response when not in `scope`.
    pub granted_scopes_field: Option<String>,
    /// The provider issues a new refresh token on every refresh.
    #[serde(default)]
    pub refresh_token_rotates: bool,
    /// Refresh tokens die after this many days unused; rekey refreshes idle grants before that.
    pub refresh_token_idle_days: Option<u32>,
    /// Refresh access tokens that expire within this many seconds.
    #[serde(default = "default_refresh_window")]
    pub refresh_window_secs: u64,
}

fn default_subject_field() -> String {
    "sub".into()
}
fn default_email_field() -> String {
    "email".into()
}
fn default_scope_separator() -> String {
    " ".into()
}
fn default_refresh_window() -> u64 {
    900
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub id: String,
    pub display_name: String,
    pub category: String,
    pub docs_url: String,
    pub auth_kinds: Vec<String>,
    /// Placeholders usable in URLs as `{name}` (e.g. `subdomain`), supplied per integration.
    #[serde(default)]
    pub params: Vec<String>,
    pub oauth: Option<OAuthSpec>,
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
    check_url(file, "docs_url", &p.docs_url, &[])?;
    for (i, param) in p.params.iter().enumerate() {
        rekey_core::ids::validate_slug(&format!("params[{i}]"), param, 32)
            .map_err(|e| fail(file, &format!("params[{i}]"), e.to_string()))?;
    }
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
    validate_oauth(file, p)?;
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

fn validate_oauth(file: &str, p: &Provider) -> Result<(), CatalogError> {
    let wants_code = p
        .auth_kinds
        .iter()
        .any(|k| k == "oauth2_authorization_code");
    let wants_cc = p
        .auth_kinds
        .iter()
        .any(|k| k == "oauth2_client_credentials");
    let Some(o) = &p.oauth else {
        if wants_code || wants_cc {
            return Err(fail(
                file,
                "oauth",
                "required when auth_kinds lists an oauth2_* kind",
            ));
        }
        return Ok(());
    };
    if !(wants_code || wants_cc) {
        return Err(fail(
            file,
            "oauth",
            "only allowed when auth_kinds lists an oauth2_* kind",
        ));
    }
    for (field, v) in [
        ("oauth.authorize_url", &o.authorize_url),
        ("oauth.token_url", &o.token_url),
        ("oauth.revocation_url", &o.revocation_url),
        ("oauth.issuer", &o.issuer),
        ("oauth.identity_url", &o.identity_url),
    ] {
        if let Some(u) = v {
            check_url(file, field, u, &p.params)?;
        }
    }
    if wants_code && o.authorize_url.is_none() && o.issuer.is_none() {
        return Err(fail(
            file,
            "oauth.authorize_url",
            "required (or `issuer` for discovery) for oauth2_authorization_code",
        ));
    }
    if o.token_url.is_none() && o.issuer.is_none() {
        return Err(fail(
            file,
            "oauth.token_url",
            "required (or `issuer` for discovery)",
        ));
    }
    if p.revoke.method == RunbookMethod::Api && o.revocation_url.is_none() {
        return Err(fail(
            file,
            "oauth.revocation_url",
            "required when revoke.method = \"api\"",
        ));
    }
    if o.scope_separator.is_empty() {
        return Err(fail(file, "oauth.scope_separator", "must not be empty"));
    }
    for (i, sc) in o.default_scopes.iter().enumerate() {
        if sc.is_empty() || sc.contains(char::is_whitespace) {
            return Err(fail(
                file,
                &format!("oauth.default_scopes[{i}]"),
                "must be non-empty without spaces",
            ));
        }
    }
    if o.refresh_window_secs == 0 || o.refresh_window_secs > 86_400 {
        return Err(fail(
            file,
            "oauth.refresh_window_secs",
            "must be between 1 and 86400",
        ));
    }
    Ok(())
}

/// Placeholders `{name}` in a URL template.
pub fn placeholders(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = url;
    while let Some(i) = rest.find('{') {
        let Some(j) = rest[i..].find('}') else { break };
        out.push(rest[i + 1..i + j].to_string());
        rest = &rest[i + j + 1..];
    }
    out
}

fn check_url(file: &str, field: &str, url: &str, params: &[String]) -> Result<(), CatalogError> {
    let declared: BTreeSet<&str> = params.iter().map(String::as_str).collect();
    for ph in placeholders(url) {
        if !declared.contains(ph.as_str()) {
            return Err(fail(
                file,
                field,
                format!("placeholder `{{{ph}}}` is not declared in `params`"),
            ));
        }
    }
    // Validate the shape with placeholders filled in.
    let filled = params
        .iter()
        .fold(url.to_string(), |u, p| u.replace(&format!("{{{p}}}"), "x"));
    let rest = filled
        .strip_prefix("https://")
        .ok_or_else(|| fail(file, field, "must be an https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty()
        || !host.contains('.')
        || host.contains(|c: char| c.is_whitespace() || c == '{' || c == '}')
    {
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

    const OAUTH: &str = r#"
id = "acme"
display_name = "Acme"
category = "crm"
docs_url = "https://docs.acme.example/api"
auth_kinds = ["oauth2_authorization_code"]
params = ["subdomain"]
[oauth]
authorize_url = "https://{subdomain}.acme.example/oauth/authorize"
token_url = "https://{subdomain}.acme.example/oauth/token"
revocation_url = "https://{subdomain}.acme.example/oauth/revoke"
default_scopes = ["read"]
[revoke]
method = "api"
[rotate]
method = "manual"
steps = ["Reconnect"]
"#;

    #[test]
    fn oauth_entries_validate() {
        let p = parse_entry("providers/acme.toml", OAUTH).unwrap();
        let o = p.oauth.unwrap();
        assert_eq!(o.scope_separator, " ");
        assert_eq!(o.refresh_window_secs, 900);
        assert_eq!(
            placeholders(o.token_url.as_deref().unwrap()),
            vec!["subdomain"]
        );
        let cases = [
            (
                OAUTH.replace("params = [\"subdomain\"]\n", ""),
                "oauth.authorize_url",
            ),
            (
                OAUTH.replace(
                    "revocation_url = \"https://{subdomain}.acme.example/oauth/revoke\"\n",
                    "",
                ),
                "oauth.revocation_url",
            ),
            (
                OAUTH.replace(
                    "token_url = \"https://{subdomain}.acme.example/oauth/token\"\n",
                    "",
                ),
                "oauth.token_url",
            ),
            (
                OAUTH.replace(
                    "https://{subdomain}.acme.example/oauth/token",
                    "http://acme.example/token",
                ),
                "oauth.token_url",
            ),
            (OAUTH.replace("[oauth]", "[oauthx]"), "line"),
            (
                GOOD.replace(
                    "[revoke]",
                    "[oauth]\ntoken_url = \"https://a.example/t\"\n[revoke]",
                ),
                "oauth",
            ),
        ];
        for (text, field) in cases {
            let e = parse_entry("providers/acme.toml", &text).unwrap_err();
            assert!(e.field.starts_with(field), "{e} (wanted {field})");
        }
        let e = parse_entry(
            "providers/acme.toml",
            &GOOD.replace("[\"api_key\"]", "[\"oauth2_client_credentials\"]"),
        )
        .unwrap_err();
        assert_eq!(e.field, "oauth");
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

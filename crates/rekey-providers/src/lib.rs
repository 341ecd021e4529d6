//! The provider catalog: one TOML file per provider under `providers/` at the
//! repository root, embedded in the binary at build time and validated at
//! start. A bad entry stops the server with the file, field and reason.
//!
//! Invariant: data, not code. Nothing here performs I/O against providers.
//! The schema is documented field by field in `docs/catalog.md`.

mod forms;
mod lint;
pub mod probe;
mod template;
mod validate;

pub use forms::{FormField, KeyForm, Placement};
pub use lint::{lint_dir, lint_embedded, lint_files, LintFinding, Severity};
pub use probe::{
    AwsSigV4, BodyValue, KeypairJwt, Predicate, Probe, ProbeMethod, ProbeOutcome, ProbeProtocol,
    Scalar,
};
pub use template::{check_param_value, placeholders, render, ParamInfo, TemplateError};
pub use validate::parse_entry;
use validate::*;

use include_dir::{include_dir, Dir};
use rekey_core::connection::ConnectionKind;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

static EMBEDDED: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../../providers");

/// How rekey rotates a credential when `rotate.method = "api"` (or guides
/// the operator when `"manual"`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Rotator {
    /// `ALTER ROLE … PASSWORD` on PostgreSQL (kind `basic`).
    Postgres,
    /// `ALTER USER … IDENTIFIED BY` on MySQL/MariaDB (kind `basic`).
    Mysql,
    /// Create a second IAM access key, switch, delete the old one (kind `aws_access_key`).
    AwsIam,
    /// Put a new public key in the free slot (`RSA_PUBLIC_KEY_2`), switch,
    /// unset the old slot (kind `rsa_key_pair`).
    RsaSecondSlot,
    /// Create a new client secret for the integration's OAuth client
    /// (kind `oauth2_client_credentials`).
    OauthClientSecret,
    /// Send the original authorizer a reauthorization link; a new grant
    /// replaces the old (kind `oauth2_authorization_code`). Operator-driven.
    Reauthorize,
    /// An operator follows `steps` and confirms each one.
    Manual,
}

impl Rotator {
    pub const ALL: &'static [Rotator] = &[
        Rotator::Postgres,
        Rotator::Mysql,
        Rotator::AwsIam,
        Rotator::RsaSecondSlot,
        Rotator::OauthClientSecret,
        Rotator::Reauthorize,
        Rotator::Manual,
    ];

    /// Rotators rekey has code for. A catalog entry may claim
    /// `method = "api"` only with one of these that is also automated (the
    /// service's rotation module has a test that its rotators are exactly
    /// these). `rsa_second_slot` and `manual` run with an operator's
    /// confirmations.
    pub fn is_implemented(self) -> bool {
        matches!(
            self,
            Rotator::Postgres
                | Rotator::Mysql
                | Rotator::AwsIam
                | Rotator::RsaSecondSlot
                | Rotator::Manual
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rotator::Postgres => "postgres",
            Rotator::Mysql => "mysql",
            Rotator::AwsIam => "aws_iam",
            Rotator::RsaSecondSlot => "rsa_second_slot",
            Rotator::OauthClientSecret => "oauth_client_secret",
            Rotator::Reauthorize => "reauthorize",
            Rotator::Manual => "manual",
        }
    }

    /// Rotators that can run without an operator (`method = "api"`); with
    /// `method = "manual"` the same rotator's states are walked by an
    /// operator. `rsa_second_slot` waits for an operator to run its
    /// statements, so it is never `api`.
    pub fn is_automated(self) -> bool {
        !matches!(
            self,
            Rotator::Reauthorize | Rotator::Manual | Rotator::RsaSecondSlot
        )
    }

    /// The auth kind this rotator works on, if it is specific to one.
    pub fn kind(self) -> Option<&'static str> {
        match self {
            Rotator::Postgres | Rotator::Mysql => Some("basic"),
            Rotator::AwsIam => Some("aws_access_key"),
            Rotator::RsaSecondSlot => Some("rsa_key_pair"),
            Rotator::OauthClientSecret => Some("oauth2_client_credentials"),
            Rotator::Reauthorize => Some("oauth2_authorization_code"),
            Rotator::Manual => None,
        }
    }
}

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
    /// Rotation only: which rotator does (or guides) the rotation.
    #[serde(default)]
    pub rotator: Option<Rotator>,
    /// Rotation only: creating the new credential kills the old one at once
    /// (so update every consumer immediately; order matters).
    #[serde(default)]
    pub invalidates_old_immediately: Option<bool>,
    /// The page in the provider's console where this is done (may use
    /// `params` placeholders).
    #[serde(default)]
    pub console_url: Option<String>,
    /// Per auth kind replacements of this runbook (a complete runbook each).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kinds: BTreeMap<String, Runbook>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RunbookMethod {
    Api,
    Manual,
}

impl Runbook {
    /// The steps an operator carries out and confirms. An `api` runbook
    /// lists first what rekey does itself (a step starting with "rekey "),
    /// then the way to do it by hand ("Or in …"): when rekey's call failed,
    /// only the latter is the operator's, as its own sentence.
    pub fn operator_steps(&self) -> Vec<String> {
        if self.method != RunbookMethod::Api {
            return self.steps.clone();
        }
        self.steps
            .iter()
            .filter(|s| !s.starts_with("rekey "))
            .map(|s| {
                let t = s
                    .strip_prefix("Or: ")
                    .or_else(|| s.strip_prefix("Or "))
                    .unwrap_or(s);
                let mut c = t.chars();
                match c.next() {
                    Some(f) => f.to_uppercase().chain(c).collect(),
                    None => String::new(),
                }
            })
            .collect()
    }
}

/// How the revocation endpoint is called.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RevocationMethod {
    /// RFC 7009: POST form `token=…` (+ `token_type_hint`) with client authentication.
    #[default]
    Rfc7009,
    /// POST with the token in the query string (`?token=…`), as Zoho and ServiceNow take it.
    TokenQuery,
    /// POST with the token to revoke as `Authorization: Bearer` (Slack `auth.revoke`).
    Bearer,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// Signed JWT client assertion (certificate credentials, RFC 7523).
    PrivateKeyJwt,
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
    /// How `revocation_url` is called (default RFC 7009).
    #[serde(default)]
    pub revocation_method: RevocationMethod,
    /// Client authentication methods the token endpoint accepts, preferred first.
    #[serde(default)]
    pub client_auth_methods: Vec<ClientAuthMethod>,
    /// Refresh tokens die this many days after the grant, used or not;
    /// reauthorization is unavoidable before then.
    #[serde(default)]
    pub refresh_token_max_days: Option<u32>,
    /// What goes before the access token in the `Authorization` header when
    /// calling the provider's API (default `"Bearer "`; Zoho uses
    /// `"Zoho-oauthtoken "`). Used for probes and the credential `apply` form.
    #[serde(default)]
    pub authorization_prefix: Option<String>,
}

impl OAuthSpec {
    /// The endpoint URL templates it names, with their field names.
    pub fn urls(&self) -> [(&'static str, &Option<String>); 5] {
        [
            ("authorize_url", &self.authorize_url),
            ("token_url", &self.token_url),
            ("revocation_url", &self.revocation_url),
            ("issuer", &self.issuer),
            ("identity_url", &self.identity_url),
        ]
    }
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
    /// Other names the provider goes by (slugs), e.g. `entra-id`; resolvable with [`Catalog::find`].
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The provider's public documentation this entry was checked against.
    #[serde(default)]
    pub references: Vec<String>,
    /// Label, help, example and allowed values of each `params` entry.
    #[serde(default)]
    pub param_info: BTreeMap<String, ParamInfo>,
    /// Connect-page forms for the static auth kinds, keyed by kind.
    #[serde(default)]
    pub key_forms: BTreeMap<String, KeyForm>,
    /// Health probes (`[[probe]]`), each for some or all auth kinds.
    #[serde(default, rename = "probe")]
    pub probes: Vec<Probe>,
    /// Why some kinds have no probe (e.g. every call costs credits).
    #[serde(default)]
    pub probe_unavailable: Option<String>,
}

impl Provider {
    pub fn supports(&self, kind: ConnectionKind) -> bool {
        self.auth_kinds.iter().any(|k| k == kind.as_str())
    }

    /// The revoke runbook for one auth kind (its `revoke.kinds` entry, else `revoke`).
    pub fn revoke_for(&self, kind: &str) -> &Runbook {
        self.revoke.kinds.get(kind).unwrap_or(&self.revoke)
    }

    /// The rotate runbook for one auth kind (its `rotate.kinds` entry, else `rotate`).
    pub fn rotate_for(&self, kind: &str) -> &Runbook {
        self.rotate.kinds.get(kind).unwrap_or(&self.rotate)
    }

    /// The health probe for one auth kind: one listing it, else the catch-all.
    pub fn probe_for(&self, kind: &str) -> Option<&Probe> {
        self.probes
            .iter()
            .find(|p| p.kinds.iter().any(|k| k == kind))
            .or_else(|| self.probes.iter().find(|p| p.kinds.is_empty()))
    }

    /// The Connect-page form for a static kind.
    pub fn key_form(&self, kind: &str) -> Option<&KeyForm> {
        self.key_forms.get(kind)
    }

    /// Fill one of this entry's URL templates with per-integration values,
    /// checking each against `param_info`. Errors never echo a value.
    pub fn render_url(
        &self,
        template: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<String, TemplateError> {
        for ph in placeholders(template) {
            if !self.params.contains(&ph) {
                return Err(TemplateError {
                    param: ph,
                    reason: "is not declared in `params`".into(),
                });
            }
        }
        render(template, values, &self.param_info)
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
    aliases: BTreeMap<String, String>,
}

fn toml_files_in(dir: &Path) -> Result<Vec<(String, std::io::Result<String>)>, CatalogError> {
    let d = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| fail(&d, "directory", e.to_string()))?;
    let mut files = Vec::new();
    for e in entries {
        let path = e.map_err(|e| fail(&d, "directory", e.to_string()))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let name = path.display().to_string();
        files.push((name, std::fs::read_to_string(&path)));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

fn embedded_files() -> Result<Vec<(String, String)>, CatalogError> {
    EMBEDDED
        .files()
        .filter(|f| f.path().extension().and_then(|e| e.to_str()) == Some("toml"))
        .map(|f| {
            let name = format!("providers/{}", f.path().display());
            let text = f
                .contents_utf8()
                .ok_or_else(|| fail(&name, "document", "not UTF-8"))?;
            Ok((name, text.to_string()))
        })
        .collect()
}

impl Catalog {
    /// The catalog compiled into this binary from `providers/`.
    pub fn embedded() -> Result<Catalog, CatalogError> {
        Catalog::from_files(embedded_files()?)
    }

    /// Load every `*.toml` in `dir` (an operator-supplied catalog).
    pub fn load_dir(dir: &Path) -> Result<Catalog, CatalogError> {
        let mut files = Vec::new();
        for (name, text) in toml_files_in(dir)? {
            let text = text.map_err(|e| fail(&name, "document", e.to_string()))?;
            files.push((name, text));
        }
        Catalog::from_files(files)
    }

    pub fn from_files(mut files: Vec<(String, String)>) -> Result<Catalog, CatalogError> {
        files.sort();
        let mut c = Catalog::default();
        for (name, text) in files {
            let p = parse_entry(&name, &text)?;
            c.insert(&name, p)?;
        }
        if c.providers.is_empty() {
            return Err(fail("providers/", "directory", "no provider entries found"));
        }
        Ok(c)
    }

    /// Add one validated entry, refusing id and alias collisions.
    fn insert(&mut self, file: &str, p: Provider) -> Result<(), CatalogError> {
        if self.providers.contains_key(&p.id) {
            return Err(fail(
                file,
                "id",
                format!("duplicate provider id `{}`", p.id),
            ));
        }
        if let Some(owner) = self.aliases.get(&p.id) {
            return Err(fail(
                file,
                "id",
                format!("duplicate provider id `{}` (an alias of `{owner}`)", p.id),
            ));
        }
        for (i, a) in p.aliases.iter().enumerate() {
            let taken = if self.providers.contains_key(a) {
                Some(a.clone())
            } else {
                self.aliases.get(a).cloned()
            };
            if let Some(owner) = taken {
                return Err(fail(
                    file,
                    &format!("aliases[{i}]"),
                    format!("duplicate name `{a}`: already used by `{owner}`"),
                ));
            }
        }
        for a in &p.aliases {
            self.aliases.insert(a.clone(), p.id.clone());
        }
        self.providers.insert(p.id.clone(), p);
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&Provider> {
        self.providers.get(id)
    }

    /// Look a provider up by id or alias.
    pub fn find(&self, name: &str) -> Option<&Provider> {
        self.providers
            .get(name)
            .or_else(|| self.aliases.get(name).and_then(|id| self.providers.get(id)))
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

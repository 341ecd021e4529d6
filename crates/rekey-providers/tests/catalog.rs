//! The shipped catalog (`providers/`) and the validator, tested from the
//! outside: every seed system is present, every file validates, URLs are
//! https and well formed, placeholders resolve, every kind has revoke and
//! rotate guidance, and bad entries fail with file, field and reason.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rekey_providers::{
    lint_dir, lint_embedded, lint_files, parse_entry, BodyValue, Catalog, ProbeOutcome,
    ProbeProtocol, Provider, RunbookMethod, Severity,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn providers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../providers")
}

fn catalog() -> Catalog {
    Catalog::embedded().unwrap()
}

/// Every system the seeds name, and the catalog id that covers it.
const SEED_SYSTEMS: &[(&str, &str)] = &[
    ("Slack", "slack"),
    ("Microsoft Teams / Entra ID", "microsoft-entra"),
    ("Outreach", "outreach"),
    ("Salesloft / Salesloft Rhythm", "salesloft"),
    ("6sense", "sixsense"),
    ("Demandbase", "demandbase"),
    ("Crossbeam", "crossbeam"),
    ("Cloudingo", "cloudingo"),
    ("Salesforce", "salesforce"),
    ("Jira (Atlassian Cloud)", "jira"),
    ("Zoho CRM", "zoho-crm"),
    ("Intercom", "intercom"),
    ("Microsoft Dynamics 365", "dynamics-365"),
    ("Pipedrive", "pipedrive"),
    ("Freshdesk", "freshdesk"),
    ("Zuora", "zuora"),
    ("Snowflake", "snowflake"),
    ("Aha!", "aha"),
    ("Productboard", "productboard"),
    (
        "Gainsight (Bulk API, GS API access key, GS API M2M)",
        "gainsight",
    ),
    ("SAP Datasphere", "sap-datasphere"),
    ("BigQuery / Google Cloud", "google-cloud"),
    ("Databricks", "databricks"),
    ("ServiceNow", "servicenow"),
    ("Amazon S3 / AWS IAM", "aws"),
    ("Segment", "segment"),
    ("Mixpanel", "mixpanel"),
    ("Google Analytics", "google-analytics"),
    ("PostgreSQL", "postgresql"),
    ("MySQL", "mysql"),
    ("Amazon Redshift", "redshift"),
    ("Custom REST API", "custom-rest"),
];

/// Lint warnings the shipped catalog knowingly carries, with the reason.
/// A new gap fails the test; a fixed gap must be removed from this list.
const KNOWN_GAPS: &[(&str, &str, &str)] = &[
    (
        "crossbeam.toml",
        "oauth.identity_url",
        "Crossbeam's Partner API docs show no current-user endpoint; the openid ID token carries the user",
    ),
    (
        "gainsight.toml",
        "oauth.identity_url",
        "Gainsight documents no user-info endpoint for its OAuth application",
    ),
    (
        "outreach.toml",
        "oauth.identity_url",
        "Outreach documents no current-user endpoint",
    ),
    (
        "productboard.toml",
        "oauth.identity_url",
        "Productboard documents no current-user endpoint",
    ),
    (
        "servicenow.toml",
        "oauth.identity_url",
        "no documented current-user endpoint for inbound OAuth clients",
    ),
    (
        "snowflake.toml",
        "oauth.identity_url",
        "Snowflake returns the user name in the token response, not from an endpoint",
    ),
    (
        "custom-rest.toml",
        "rotate.overlap",
        "whether two credentials can coexist depends on the custom API",
    ),
    // Generic OAuth/OIDC entries added by the OAuth work: endpoints are set
    // per integration, so there is nothing to cite or probe in the catalog.
    ("custom-oauth2.toml", "probe", "endpoints are per integration"),
    ("custom-oauth2.toml", "references", "RFC 6749 is the docs_url"),
    ("custom-oauth2.toml", "rotate.overlap", "depends on the provider"),
    ("custom-oidc.toml", "probe", "endpoints come from discovery"),
    ("custom-oidc.toml", "references", "OIDC Core is the docs_url"),
    ("custom-oidc.toml", "rotate.overlap", "depends on the provider"),
];

#[test]
fn every_file_parses_validates_and_is_embedded() {
    let mut n = 0;
    for entry in std::fs::read_dir(providers_dir()).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some("toml"),
            "only entry files belong in providers/: {}",
            path.display()
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.display().to_string();
        let p = parse_entry(&name, &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            path.file_stem().and_then(|s| s.to_str()),
            Some(p.id.as_str())
        );
        n += 1;
    }
    assert_eq!(catalog().len(), n, "the embedded catalog is stale");
    assert_eq!(Catalog::load_dir(&providers_dir()).unwrap().len(), n);
}

#[test]
fn every_seed_system_is_present() {
    let c = catalog();
    let mut ids = BTreeSet::new();
    for (system, id) in SEED_SYSTEMS {
        let p = c
            .get(id)
            .unwrap_or_else(|| panic!("no catalog entry `{id}` for seed system {system}"));
        assert!(!p.display_name.is_empty());
        assert!(ids.insert(*id), "{id} listed twice");
    }
    assert!(SEED_SYSTEMS.len() >= 32);
    // Names the seeds use resolve through aliases.
    for (alias, id) in [
        ("microsoft-teams", "microsoft-entra"),
        ("entra-id", "microsoft-entra"),
        ("salesloft-rhythm", "salesloft"),
        ("6sense", "sixsense"),
        ("bigquery", "google-cloud"),
        ("amazon-s3", "aws"),
        ("postgres", "postgresql"),
        ("gainsight-bulk-api", "gainsight"),
    ] {
        assert_eq!(c.find(alias).map(|p| p.id.as_str()), Some(id), "{alias}");
    }
}

#[test]
fn ids_and_aliases_are_unique() {
    let c = catalog();
    let mut names = BTreeSet::new();
    for p in c.all() {
        assert!(names.insert(p.id.clone()), "duplicate name {}", p.id);
        for a in &p.aliases {
            assert!(
                names.insert(a.clone()),
                "duplicate name {a} (alias of {})",
                p.id
            );
        }
    }
}

/// Every URL template of an entry, with its field name.
fn urls(p: &Provider) -> Vec<(String, String)> {
    let mut out = vec![("docs_url".to_string(), p.docs_url.clone())];
    for (i, r) in p.references.iter().enumerate() {
        out.push((format!("references[{i}]"), r.clone()));
    }
    if let Some(o) = &p.oauth {
        for (f, u) in o.urls() {
            if let Some(u) = u {
                out.push((format!("oauth.{f}"), u.clone()));
            }
        }
    }
    for (i, pr) in p.probes.iter().enumerate() {
        if let Some(u) = &pr.url {
            out.push((format!("probe[{i}].url"), u.clone()));
        }
    }
    for (name, rb) in [("revoke", &p.revoke), ("rotate", &p.rotate)] {
        if let Some(u) = &rb.console_url {
            out.push((format!("{name}.console_url"), u.clone()));
        }
        for (k, sub) in &rb.kinds {
            if let Some(u) = &sub.console_url {
                out.push((format!("{name}.kinds.{k}.console_url"), u.clone()));
            }
        }
    }
    out
}

fn examples(p: &Provider) -> BTreeMap<String, String> {
    p.params
        .iter()
        .map(|k| (k.clone(), p.param_info[k].example.clone()))
        .collect()
}

/// An independent, deliberately simple URL check (not the validator's).
fn assert_well_formed(id: &str, field: &str, url: &str) {
    let rest = url
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("{id}: {field}: not https: {url}"));
    assert!(
        !url.contains(char::is_whitespace) && !url.contains('{') && !url.contains('}'),
        "{id}: {field}: {url}"
    );
    let host = rest.split(['/', '?', '#']).next().unwrap();
    assert!(
        !host.contains('@') && !host.contains(':'),
        "{id}: {field}: {url}"
    );
    let labels: Vec<&str> = host.split('.').collect();
    assert!(labels.len() >= 2, "{id}: {field}: {url}");
    for l in labels {
        assert!(
            !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{id}: {field}: bad host {host}"
        );
    }
}

#[test]
fn urls_are_https_and_well_formed_with_placeholders_resolved() {
    for p in catalog().all() {
        for param in &p.params {
            assert!(
                p.param_info.contains_key(param),
                "{}: param `{param}` has no param_info (label + example)",
                p.id
            );
        }
        let values = examples(p);
        for (field, template) in urls(p) {
            let url = p
                .render_url(&template, &values)
                .unwrap_or_else(|e| panic!("{}: {field}: {e}", p.id));
            assert_well_formed(&p.id, &field, &url);
            // Every allowed value of every placeholder renders too.
            for ph in rekey_providers::placeholders(&template) {
                for a in &p.param_info[&ph].allowed {
                    let mut v = values.clone();
                    v.insert(ph.clone(), a.clone());
                    let url = p.render_url(&template, &v).unwrap();
                    assert_well_formed(&p.id, &field, &url);
                }
            }
        }
        for pr in &p.probes {
            for v in pr.headers.values() {
                p.render_url(&format!("https://x.example/{v}"), &values)
                    .unwrap_or_else(|e| panic!("{}: probe header: {e}", p.id));
            }
        }
    }
}

#[test]
fn oauth_entries_have_token_url_and_revocation_or_manual_steps() {
    for p in catalog().all() {
        let oauth_kinds: Vec<&String> = p
            .auth_kinds
            .iter()
            .filter(|k| k.starts_with("oauth2_"))
            .collect();
        if oauth_kinds.is_empty() {
            assert!(p.oauth.is_none(), "{}", p.id);
            continue;
        }
        let o = p.oauth.as_ref().unwrap();
        assert!(
            o.token_url.is_some() || o.issuer.is_some(),
            "{}: no token_url (nor an issuer to discover it)",
            p.id
        );
        for k in oauth_kinds {
            let rb = p.revoke_for(k);
            match rb.method {
                RunbookMethod::Api => assert!(o.revocation_url.is_some(), "{}: {k}", p.id),
                RunbookMethod::Manual => assert!(!rb.steps.is_empty(), "{}: {k}", p.id),
            }
            if k == "oauth2_authorization_code" {
                assert!(o.authorize_url.is_some() || o.issuer.is_some(), "{}", p.id);
            }
        }
    }
}

/// When rekey's own revocation call fails, the operator gets the runbook's
/// manual way only: never a step that says what rekey does.
#[test]
fn every_revocation_leaves_the_operator_a_manual_step() {
    for p in catalog().all() {
        for k in &p.auth_kinds {
            let steps = p.revoke_for(k).operator_steps();
            assert!(
                !steps.is_empty(),
                "{}: {k}: no manual revocation step",
                p.id
            );
            for s in &steps {
                assert!(
                    !s.starts_with("rekey ") && !s.starts_with("Or "),
                    "{}: {k}: `{s}` is not an operator's step",
                    p.id
                );
            }
        }
    }
    let slack = catalog()
        .get("slack")
        .unwrap()
        .revoke_for("api_key")
        .operator_steps();
    assert_eq!(
        slack,
        ["In Slack: open the app in the sidebar → About → Configuration → scroll down → Remove App."]
    );
}

#[test]
fn every_kind_has_revoke_and_rotate_guidance() {
    for p in catalog().all() {
        for k in &p.auth_kinds {
            for (what, rb) in [("revoke", p.revoke_for(k)), ("rotate", p.rotate_for(k))] {
                assert!(
                    !rb.steps.is_empty() && rb.steps.iter().all(|s| s.trim().len() > 10),
                    "{}: {what} for {k} has no usable steps",
                    p.id
                );
                assert!(
                    rb.steps.len() <= 8,
                    "{}: {what} for {k}: keep runbooks short",
                    p.id
                );
            }
            // Forms and probes are checked by the lint (see KNOWN_GAPS).
            if STATIC.contains(&k.as_str()) {
                assert!(p.key_form(k).is_some(), "{}: no Connect form for {k}", p.id);
            }
        }
    }
}

const STATIC: [&str; 6] = [
    "api_key",
    "basic",
    "headers",
    "aws_access_key",
    "service_account_json",
    "rsa_key_pair",
];

#[test]
fn seed_specific_facts_are_encoded() {
    let c = catalog();
    // Snowflake: two key slots, rotated through the free one.
    let sf = c.get("snowflake").unwrap();
    let rb = sf.rotate_for("rsa_key_pair");
    assert_eq!(rb.overlap, Some(true));
    assert_eq!(rb.rotator.map(|r| r.as_str()), Some("rsa_second_slot"));
    assert!(rb.steps.iter().any(|s| s.contains("RSA_PUBLIC_KEY_2")));
    // Gainsight M2M: regenerating invalidates at once (pitfall), rotation overlaps.
    let gs = c.get("gainsight").unwrap();
    assert!(gs
        .pitfalls
        .iter()
        .any(|s| s.contains("Re-Generate Secret") && s.contains("immediately")));
    assert_eq!(
        gs.rotate_for("api_key").invalidates_old_immediately,
        Some(true)
    );
    // AWS: at most two access keys; create first, delete after.
    let aws = c.get("aws").unwrap();
    assert!(aws.pitfalls.iter().any(|s| s.contains("two access keys")));
    assert_eq!(aws.rotate.overlap, Some(true));
    // Reauthorize as the same user with the same scopes.
    for id in [
        "slack",
        "outreach",
        "salesloft",
        "microsoft-entra",
        "jira",
        "salesforce",
    ] {
        assert!(
            c.get(id)
                .unwrap()
                .pitfalls
                .iter()
                .any(|s| s.contains("same") && s.contains("scopes")),
            "{id}"
        );
    }
    // Outreach revocation happens on its authorized-applications page.
    assert!(c
        .get("outreach")
        .unwrap()
        .revoke
        .console_url
        .as_deref()
        .is_some_and(|u| u.contains("accounts.outreach.io/oauth/authorized_applications")));
    // Slack: 200 with ok=false is an auth failure, judged from the body.
    let probe = c
        .get("slack")
        .unwrap()
        .probe_for("oauth2_authorization_code")
        .unwrap();
    let dead = |path: &str| match path {
        "ok" => Some(BodyValue::Bool(false)),
        "error" => Some(BodyValue::Str("invalid_auth".into())),
        _ => None,
    };
    assert_eq!(probe.judge(200, &dead), ProbeOutcome::AuthFailure);
    let alive = |path: &str| (path == "ok").then_some(BodyValue::Bool(true));
    assert_eq!(probe.judge(200, &alive), ProbeOutcome::Ok);
    // Databases are probed with their own protocol.
    let pg = c.get("postgresql").unwrap().probe_for("basic").unwrap();
    assert_eq!(pg.protocol, ProbeProtocol::Postgres);
}

#[test]
fn host_parameters_cannot_redirect_credentials() {
    let c = catalog();
    let zoho = c.get("zoho-crm").unwrap();
    let token = zoho.oauth.as_ref().unwrap().token_url.clone().unwrap();
    let mut v = BTreeMap::from([("accounts_host".to_string(), "accounts.zoho.eu".to_string())]);
    assert_eq!(
        zoho.render_url(&token, &v).unwrap(),
        "https://accounts.zoho.eu/oauth/v2/token"
    );
    v.insert("accounts_host".into(), "accounts.evil.example".into());
    assert!(zoho.render_url(&token, &v).is_err());
    let dbx = c.get("databricks").unwrap();
    let tmpl = dbx.probes[0].url.clone().unwrap();
    let ok = BTreeMap::from([(
        "workspace_host".to_string(),
        "adb-1234567890123456.7.azuredatabricks.net".to_string(),
    )]);
    assert!(dbx.render_url(&tmpl, &ok).is_ok());
    let bad = BTreeMap::from([(
        "workspace_host".to_string(),
        "evil.example/azuredatabricks.net".to_string(),
    )]);
    let e = dbx.render_url(&tmpl, &bad).unwrap_err();
    assert!(!e.to_string().contains("evil"), "{e}");
    let fd = c.get("freshdesk").unwrap();
    let tmpl = fd.probes[0].url.clone().unwrap();
    let bad = BTreeMap::from([("subdomain".to_string(), "x.evil.example#".to_string())]);
    assert!(fd.render_url(&tmpl, &bad).is_err());
}

#[test]
fn shipped_catalog_lints_clean_except_known_gaps() {
    let findings = lint_embedded().unwrap();
    let errors: Vec<String> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let got: BTreeSet<(String, String)> = findings
        .iter()
        .map(|f| {
            let file = f.file.rsplit('/').next().unwrap_or(&f.file).to_string();
            (file, f.field.clone())
        })
        .collect();
    let want: BTreeSet<(String, String)> = KNOWN_GAPS
        .iter()
        .map(|(f, field, _)| (f.to_string(), field.to_string()))
        .collect();
    let unexpected: Vec<_> = findings
        .iter()
        .filter(|f| {
            let file = f.file.rsplit('/').next().unwrap_or(&f.file).to_string();
            !want.contains(&(file, f.field.clone()))
        })
        .map(ToString::to_string)
        .collect();
    assert!(unexpected.is_empty(), "new catalog gaps: {unexpected:#?}");
    let present: BTreeSet<String> = std::fs::read_dir(providers_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let fixed: Vec<_> = want
        .difference(&got)
        .filter(|(file, _)| present.contains(file))
        .collect();
    assert!(
        fixed.is_empty(),
        "gaps fixed, remove from KNOWN_GAPS: {fixed:?}"
    );
}

// ---- bad input ------------------------------------------------------------

const BASE: &str = r#"
id = "acme"
display_name = "Acme"
category = "crm"
docs_url = "https://docs.acme.example/api"
references = ["https://docs.acme.example/api"]
aliases = ["acme-cloud"]
auth_kinds = ["oauth2_authorization_code", "api_key", "rsa_key_pair"]
params = ["subdomain", "region"]

[param_info.subdomain]
label = "Subdomain"
example = "tenant1"

[param_info.region]
label = "Region"
example = "api.acme.example"
allowed = ["api.acme.example", "api.eu.acme.example"]

[oauth]
authorize_url = "https://{subdomain}.acme.example/oauth/authorize"
token_url = "https://{subdomain}.acme.example/oauth/token"
revocation_url = "https://{subdomain}.acme.example/oauth/revoke"
identity_url = "https://{region}/me"
default_scopes = ["read"]
refresh_token_idle_days = 30

[key_forms.api_key]
placement = "header"
name = "X-Api-Key"
fields = [{ name = "key", label = "API key", secret = true }]

[key_forms.rsa_key_pair]
fields = [
  { name = "private_key_pem", label = "Private key", secret = true, multiline = true },
  { name = "username", label = "User" },
]

[[probe]]
url = "https://{region}/me"
success_when = [{ path = "ok", equals = true }]

[revoke]
method = "api"
console_url = "https://{subdomain}.acme.example/settings#apps"
steps = ["rekey revokes the token at the provider."]

[revoke.kinds.rsa_key_pair]
method = "manual"
steps = ["Remove the public key from the user."]

[rotate]
method = "manual"
rotator = "reauthorize"
overlap = true
steps = ["Reconnect through the Connect page."]

[rotate.kinds.rsa_key_pair]
method = "manual"
rotator = "rsa_second_slot"
overlap = true
steps = ["Put the new key in the second slot, switch, unset the first."]
"#;

fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "mutation anchor missing: {from}");
    BASE.replacen(from, to, 1)
}

#[test]
fn the_base_entry_is_valid() {
    let p = parse_entry("providers/acme.toml", BASE).unwrap();
    assert_eq!(p.probes.len(), 1);
    assert_eq!(
        p.rotate_for("rsa_key_pair").rotator.map(|r| r.as_str()),
        Some("rsa_second_slot")
    );
    assert_eq!(
        p.rotate_for("api_key").rotator.map(|r| r.as_str()),
        Some("reauthorize")
    );
    assert!(lint_files(vec![("providers/acme.toml".into(), BASE.into())]).is_empty());
}

#[test]
fn malformed_and_contradictory_entries_name_file_field_and_reason() {
    let cases: Vec<(String, &str)> = vec![
        (with("overlap = true\nsteps = [\"Reconnect", "overlap = true\ninvalidates_old_immediately = true\nsteps = [\"Reconnect"), "rotate.invalidates_old_immediately"),
        (with("rotator = \"reauthorize\"", "rotator = \"aws_iam\""), "rotate.rotator"),
        (with("[rotate]\nmethod = \"manual\"\nrotator = \"reauthorize\"", "[rotate]\nmethod = \"api\""), "rotate.rotator"),
        (with("[rotate]\nmethod = \"manual\"\nrotator = \"reauthorize\"", "[rotate]\nmethod = \"api\"\nrotator = \"manual\""), "rotate.rotator"),
        (with("[revoke]\nmethod = \"api\"", "[revoke]\nmethod = \"api\"\nrotator = \"manual\""), "revoke.rotator"),
        (with("rotator = \"rsa_second_slot\"\noverlap = true", "rotator = \"rsa_second_slot\"\noverlap = false"), "rotate.kinds.rsa_key_pair.overlap"),
        // A rotator rekey does not have cannot be claimed as `api`.
        (with("[rotate.kinds.rsa_key_pair]\nmethod = \"manual\"", "[rotate.kinds.rsa_key_pair]\nmethod = \"api\""), "rotate.kinds.rsa_key_pair.rotator"),
        (with("[rotate.kinds.rsa_key_pair]", "[rotate.kinds.basic]"), "rotate.kinds.basic"),
        (with("[rotate.kinds.rsa_key_pair]", "[rotate.kinds.api_key]\nmethod = \"manual\"\nsteps = [\"Make a new key.\"]\n[rotate.kinds.api_key.kinds.basic]\nmethod = \"manual\"\nsteps = [\"Nested.\"]\n[rotate.kinds.rsa_key_pair]"), "rotate.kinds.api_key.kinds"),
        (with("{ name = \"key\", label = \"API key\", secret = true }", "{ name = \"key\", label = \"API key\", secret = false }"), "key_forms.api_key.fields[0].secret"),
        (with("[key_forms.api_key]", "[key_forms.oauth2_authorization_code]\nfields = []\n[key_forms.api_key]"), "key_forms.oauth2_authorization_code"),
        (with("{ name = \"private_key_pem\", label = \"Private key\", secret = true, multiline = true },", ""), "key_forms.rsa_key_pair.fields"),
        (with("name = \"X-Api-Key\"", "name = \"X Api Key\""), "key_forms.api_key.name"),
        (with("[[probe]]\n", "[[probe]]\nkinds = [\"basic\"]\n"), "probe[0].kinds[0]"),
        (with("[[probe]]\n", "[[probe]]\nurl = \"https://{region}/ping\"\n[[probe]]\n"), "probe[1].kinds"),
        (with("[[probe]]\n", "[[probe]]\nheaders = { Authorization = \"Bearer x\" }\n"), "probe[0].headers.Authorization"),
        (with("url = \"https://{region}/me\"\nsuccess_when", "url = \"http://{region}/me\"\nsuccess_when"), "probe[0].url"),
        (with("{ path = \"ok\", equals = true }", "{ path = \"ok\", equals = true, exists = true }"), "probe[0].success_when[0]"),
        (with("[[probe]]\n", "[[probe]]\nprotocol = \"postgres\"\n"), "probe[0]"),
        (with("authorize_url = \"https://{subdomain}.acme.example/oauth/authorize\"", "authorize_url = \"https://{subdomain}/oauth/authorize\""), "oauth.authorize_url"),
        (with("[param_info.subdomain]", "[param_info.tenant]\nlabel = \"T\"\nexample = \"t\"\n[param_info.subdomain]"), "param_info.tenant"),
        (with("example = \"api.acme.example\"", "example = \"api.evil.example\""), "param_info.region.example"),
        (with("references = [\"https://docs.acme.example/api\"]", "references = [\"http://docs.acme.example/api\"]"), "references[0]"),
        (with("aliases = [\"acme-cloud\"]", "aliases = [\"acme\"]"), "aliases[0]"),
        (with("params = [\"subdomain\", \"region\"]", "params = [\"subdomain\", \"region\", \"region\"]"), "params[2]"),
        (with("revocation_url = \"https://{subdomain}.acme.example/oauth/revoke\"\n", "revocation_method = \"bearer\"\n"), "oauth.revocation_url"),
        (with("default_scopes = [\"read\"]", "default_scopes = [\"read\"]\nextra_authorize_params = { state = \"x\" }"), "oauth.extra_authorize_params.state"),
        (with("default_scopes = [\"read\"]", "default_scopes = [\"read\", \"{tenant}\"]"), "oauth.default_scopes[1]"),
        (with("refresh_token_idle_days = 30", "refresh_token_idle_days = 30\nrefresh_token_max_days = 10"), "oauth.refresh_token_idle_days"),
        (with("refresh_token_idle_days = 30", "refresh_token_idle_days = 30\nauthorization_prefix = \"\""), "oauth.authorization_prefix"),
        (with("console_url = \"https://{subdomain}.acme.example/settings#apps\"", "console_url = \"http://acme.example/settings\""), "revoke.console_url"),
        (with("[revoke.kinds.rsa_key_pair]\nmethod = \"manual\"", "[revoke.kinds.rsa_key_pair]\nmethod = \"api\""), "revoke.kinds.rsa_key_pair.method"),
        (with("docs_url = \"https://docs.acme.example/api\"", "docs_url = \"https://localhost/api\""), "docs_url"),
        (with("identity_url = \"https://{region}/me\"", "identity_url = \"https://{region}/me\"\nidentity_subject_field = \"user..id\""), "oauth.identity_subject_field"),
    ];
    for (text, field) in cases {
        let e = parse_entry("providers/acme.toml", &text).unwrap_err();
        assert_eq!(e.file, "providers/acme.toml");
        assert!(e.field.starts_with(field), "{e} (wanted field {field})");
        assert!(!e.reason.trim().is_empty(), "{e}");
        assert!(e.to_string().contains("providers/acme.toml"), "{e}");
    }
}

#[test]
fn toml_errors_name_line_and_key() {
    let e = parse_entry(
        "providers/acme.toml",
        &with("rotator = \"reauthorize\"", "rotator = \"magic\""),
    )
    .unwrap_err();
    assert!(
        e.field.starts_with("line ") && e.field.contains("rotate.rotator"),
        "{e}"
    );
    assert!(
        e.reason.contains("magic") || e.reason.contains("variant"),
        "{e}"
    );
    let e = parse_entry(
        "providers/acme.toml",
        &with("[[probe]]\n", "[[probe]]\nbogus = 1\n"),
    )
    .unwrap_err();
    assert!(
        e.field.contains("probe.bogus") && e.reason.contains("bogus"),
        "{e}"
    );
}

#[test]
fn lint_dir_reports_every_problem_with_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    w("acme.toml", BASE);
    w(
        "beta.toml",
        &BASE
            .replace("id = \"acme\"", "id = \"beta\"")
            .replace("http", "HTTP"),
    );
    w(
        "gamma.toml",
        &BASE.replace("id = \"acme\"", "id = \"gamma\"").replace(
            "aliases = [\"acme-cloud\"]",
            "aliases = [\"acme-cloud\", \"x-gamma\"]",
        ),
    );
    w(
        "delta.toml",
        &BASE
            .replace("id = \"acme\"", "id = \"delta\"")
            .replace("aliases = [\"acme-cloud\"]", "aliases = [\"delta-cloud\"]")
            .replace("references = [\"https://docs.acme.example/api\"]\n", ""),
    );
    std::fs::write(dir.path().join("bad-utf8.toml"), [0xff, 0xfe, 0x00]).unwrap();
    w("README.md", "not an entry");
    let findings = lint_dir(dir.path()).unwrap();
    let find = |file: &str, field: &str| {
        findings
            .iter()
            .find(|f| f.file.ends_with(file) && f.field.starts_with(field))
            .unwrap_or_else(|| panic!("no finding for {file} {field}: {findings:#?}"))
    };
    assert_eq!(find("beta.toml", "docs_url").severity, Severity::Error);
    assert_eq!(find("gamma.toml", "aliases[0]").severity, Severity::Error);
    assert!(find("gamma.toml", "aliases[0]").message.contains("acme"));
    assert_eq!(find("delta.toml", "references").severity, Severity::Warning);
    assert_eq!(find("bad-utf8.toml", "document").severity, Severity::Error);
    assert!(!findings.iter().any(|f| f.file.ends_with("acme.toml")));
    assert!(!findings.iter().any(|f| f.file.ends_with("README.md")));
    // Errors sort before warnings; each finding prints file, field and reason.
    assert_eq!(findings[0].severity, Severity::Error);
    assert!(find("beta.toml", "docs_url")
        .to_string()
        .starts_with("error: "));

    let empty = tempfile::tempdir().unwrap();
    let f = lint_dir(empty.path()).unwrap();
    assert_eq!(f.len(), 1);
    assert!(f[0].message.contains("no provider entries"));
    let e = lint_dir(&empty.path().join("missing")).unwrap_err();
    assert_eq!(e.field, "directory");
}

#[test]
fn duplicate_names_stop_loading() {
    let other = BASE
        .replace("id = \"acme\"", "id = \"acme-cloud\"")
        .replace("aliases = [\"acme-cloud\"]", "aliases = []");
    let e = Catalog::from_files(vec![
        ("providers/acme.toml".into(), BASE.into()),
        ("providers/acme-cloud.toml".into(), other),
    ])
    .unwrap_err();
    // acme-cloud.toml sorts first; acme.toml's alias then collides with it.
    assert_eq!(e.file, "providers/acme.toml");
    assert_eq!(e.field, "aliases[0]");
    assert!(
        e.reason.contains("duplicate") && e.reason.contains("acme-cloud"),
        "{e}"
    );
    let e = Catalog::from_files(vec![
        ("a/acme.toml".into(), BASE.into()),
        ("b/acme.toml".into(), BASE.into()),
    ])
    .unwrap_err();
    assert_eq!(e.field, "id");
}

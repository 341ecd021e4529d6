//! Validation of catalog entries: parsing one TOML entry with errors that
//! name the file, the field and the reason, and the checks every entry must
//! pass (kinds, URLs and their placeholders, OAuth, runbooks, forms, probes).

use super::*;

pub(crate) fn fail(file: &str, field: &str, reason: impl Into<String>) -> CatalogError {
    CatalogError {
        file: file.to_string(),
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// Name the place of a TOML error: `line N` plus, when it can be read off
/// the text, the dotted key (`line 12 (probe.url)`).
pub(crate) fn locate(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line_no = before.lines().count().max(1);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let mut table = String::new();
    for l in before.lines() {
        let l = l.trim();
        if l.starts_with('[') {
            table = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
    }
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.contains(char::is_whitespace));
    let path = match (table.is_empty(), key) {
        (true, Some(k)) => k,
        (false, Some(k)) => format!("{table}.{k}"),
        (false, None) => table,
        (true, None) => String::new(),
    };
    if path.is_empty() {
        format!("line {line_no}")
    } else {
        format!("line {line_no} ({path})")
    }
}

/// Parse and validate one entry. `file` names it in errors; its stem must be the id.
pub fn parse_entry(file: &str, text: &str) -> Result<Provider, CatalogError> {
    let p: Provider = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().to_string();
        let field = match e.span() {
            Some(s) => locate(text, s.start),
            None => "document".to_string(),
        };
        fail(file, &field, msg)
    })?;
    validate(file, &p)?;
    Ok(p)
}

pub(crate) const STATIC_KINDS: [&str; 6] = [
    "api_key",
    "basic",
    "headers",
    "aws_access_key",
    "service_account_json",
    "rsa_key_pair",
];

pub(crate) fn is_oauth_kind(k: &str) -> bool {
    k == "oauth2_authorization_code" || k == "oauth2_client_credentials"
}

/// Context for URL checks: the entry's declared params and their info.
pub(crate) struct Ctx<'a> {
    file: &'a str,
    p: &'a Provider,
}

impl Ctx<'_> {
    fn err(&self, field: &str, reason: impl Into<String>) -> CatalogError {
        fail(self.file, field, reason)
    }

    fn declared(&self, field: &str, s: &str) -> Result<(), CatalogError> {
        for ph in placeholders(s) {
            if !self.p.params.contains(&ph) {
                return Err(self.err(
                    field,
                    format!("placeholder `{{{ph}}}` is not declared in `params`"),
                ));
            }
        }
        Ok(())
    }

    /// A URL template: placeholders declared, hosts pinned or constrained,
    /// and the shape valid with examples (and every allowed value) filled in.
    fn url(&self, field: &str, url: &str) -> Result<(), CatalogError> {
        self.url_with(field, url, false)
    }

    fn url_with(&self, field: &str, url: &str, allow_fragment: bool) -> Result<(), CatalogError> {
        self.declared(field, url)?;
        if let Some(auth) = template::authority(url) {
            if !template::host_is_pinned(auth) {
                let host = auth.split(':').next().unwrap_or("");
                for ph in placeholders(host) {
                    let constrained = self
                        .p
                        .param_info
                        .get(&ph)
                        .is_some_and(|i| !i.allowed.is_empty() || !i.host_suffixes.is_empty());
                    if !constrained {
                        return Err(self.err(
                            field,
                            format!(
                                "placeholder `{{{ph}}}` decides the host's domain: give `param_info.{ph}.allowed` or `param_info.{ph}.host_suffixes` so credentials only go to the provider"
                            ),
                        ));
                    }
                }
            }
        }
        let fill = |overrides: &BTreeMap<String, String>| {
            self.p.params.iter().fold(url.to_string(), |u, name| {
                let v = overrides
                    .get(name)
                    .cloned()
                    .or_else(|| self.p.param_info.get(name).map(|i| i.example.clone()))
                    .unwrap_or_else(|| "x".to_string());
                u.replace(&format!("{{{name}}}"), &v)
            })
        };
        template::check_concrete_url(&fill(&BTreeMap::new()), allow_fragment)
            .map_err(|r| self.err(field, r))?;
        for ph in placeholders(url) {
            if let Some(info) = self.p.param_info.get(&ph) {
                for a in &info.allowed {
                    let o = BTreeMap::from([(ph.clone(), a.clone())]);
                    template::check_concrete_url(&fill(&o), false)
                        .map_err(|r| self.err(field, format!("with `{ph}` = `{a}`: {r}")))?;
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn check_doc_url(file: &str, field: &str, url: &str) -> Result<(), CatalogError> {
    if !placeholders(url).is_empty() {
        return Err(fail(
            file,
            field,
            "documentation URLs cannot have placeholders",
        ));
    }
    template::check_concrete_url(url, true).map_err(|r| fail(file, field, r))
}

pub(crate) fn check_text(file: &str, field: &str, s: &str) -> Result<(), CatalogError> {
    if s.trim().is_empty() {
        return Err(fail(file, field, "must not be empty"));
    }
    Ok(())
}

pub(crate) fn validate(file: &str, p: &Provider) -> Result<(), CatalogError> {
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
    check_doc_url(file, "docs_url", &p.docs_url)?;
    let mut seen_refs = BTreeSet::new();
    for (i, r) in p.references.iter().enumerate() {
        let field = format!("references[{i}]");
        check_doc_url(file, &field, r)?;
        if !seen_refs.insert(r) {
            return Err(fail(file, &field, "is listed twice"));
        }
    }
    let mut seen_aliases = BTreeSet::new();
    for (i, a) in p.aliases.iter().enumerate() {
        let field = format!("aliases[{i}]");
        rekey_core::ids::validate_slug(&field, a, 64)
            .map_err(|e| fail(file, &field, e.to_string()))?;
        if a == &p.id {
            return Err(fail(file, &field, "repeats the entry's own id"));
        }
        if !seen_aliases.insert(a) {
            return Err(fail(file, &field, format!("`{a}` is listed twice")));
        }
    }
    let mut seen_params = BTreeSet::new();
    for (i, param) in p.params.iter().enumerate() {
        rekey_core::ids::validate_slug(&format!("params[{i}]"), param, 32)
            .map_err(|e| fail(file, &format!("params[{i}]"), e.to_string()))?;
        if !seen_params.insert(param) {
            return Err(fail(
                file,
                &format!("params[{i}]"),
                format!("`{param}` is listed twice"),
            ));
        }
    }
    validate_param_info(file, p)?;
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
    let ctx = Ctx { file, p };
    validate_oauth(&ctx)?;
    validate_runbook(&ctx, "revoke", &p.revoke, None)?;
    validate_runbook(&ctx, "rotate", &p.rotate, None)?;
    for (i, s) in p.pitfalls.iter().enumerate() {
        check_text(file, &format!("pitfalls[{i}]"), s)?;
    }
    validate_forms(&ctx)?;
    validate_probes(&ctx)?;
    if let Some(r) = &p.probe_unavailable {
        check_text(file, "probe_unavailable", r)?;
    }
    Ok(())
}

pub(crate) fn validate_param_info(file: &str, p: &Provider) -> Result<(), CatalogError> {
    for (name, info) in &p.param_info {
        let at = |f: &str| format!("param_info.{name}.{f}");
        if !p.params.contains(name) {
            return Err(fail(
                file,
                &format!("param_info.{name}"),
                "describes a parameter not declared in `params`",
            ));
        }
        check_text(file, &at("label"), &info.label)?;
        if !info.allowed.is_empty() && !info.host_suffixes.is_empty() {
            return Err(fail(
                file,
                &at("host_suffixes"),
                "give either `allowed` or `host_suffixes`, not both",
            ));
        }
        for (i, a) in info.allowed.iter().enumerate() {
            check_param_value(name, a, None)
                .map_err(|e| fail(file, &at(&format!("allowed[{i}]")), e.reason))?;
        }
        for (i, s) in info.host_suffixes.iter().enumerate() {
            let ok = s.starts_with('.')
                && s.len() > 1
                && template::check_concrete_url(&format!("https://x{s}"), false).is_ok()
                && s[1..].contains('.');
            if !ok {
                return Err(fail(
                    file,
                    &at(&format!("host_suffixes[{i}]")),
                    "must be a domain starting with '.', e.g. `.cloud.databricks.com`",
                ));
            }
        }
        check_param_value(name, &info.example, Some(info))
            .map_err(|e| fail(file, &at("example"), e.reason))?;
    }
    Ok(())
}

pub(crate) fn validate_oauth(ctx: &Ctx<'_>) -> Result<(), CatalogError> {
    let (file, p) = (ctx.file, ctx.p);
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
    for (field, v) in o.urls() {
        if let Some(u) = v {
            ctx.url(&format!("oauth.{field}"), u)?;
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
    if o.revocation_url.is_none() {
        if p.revoke.method == RunbookMethod::Api {
            return Err(fail(
                file,
                "oauth.revocation_url",
                "required when revoke.method = \"api\"",
            ));
        }
        if let Some((k, _)) = p
            .revoke
            .kinds
            .iter()
            .find(|(_, rb)| rb.method == RunbookMethod::Api)
        {
            return Err(fail(
                file,
                "oauth.revocation_url",
                format!("required when revoke.kinds.{k}.method = \"api\""),
            ));
        }
        if o.revocation_method != RevocationMethod::Rfc7009 {
            return Err(fail(
                file,
                "oauth.revocation_method",
                "only applies with `revocation_url`",
            ));
        }
    }
    if o.scope_separator.is_empty() {
        return Err(fail(file, "oauth.scope_separator", "must not be empty"));
    }
    for (i, sc) in o.default_scopes.iter().enumerate() {
        let field = format!("oauth.default_scopes[{i}]");
        if sc.is_empty() || sc.contains(char::is_whitespace) {
            return Err(fail(file, &field, "must be non-empty without spaces"));
        }
        if sc.contains(o.scope_separator.as_str()) && o.scope_separator != " " {
            return Err(fail(
                file,
                &field,
                format!("contains the scope separator `{}`", o.scope_separator),
            ));
        }
        ctx.declared(&field, sc)?;
    }
    let mut scopes = BTreeSet::new();
    for (i, sc) in o.default_scopes.iter().enumerate() {
        if !scopes.insert(sc) {
            return Err(fail(
                file,
                &format!("oauth.default_scopes[{i}]"),
                format!("`{sc}` is listed twice"),
            ));
        }
    }
    for (k, v) in &o.extra_authorize_params {
        let field = format!("oauth.extra_authorize_params.{k}");
        let reserved = [
            "client_id",
            "redirect_uri",
            "response_type",
            "scope",
            "state",
            "code_challenge",
            "code_challenge_method",
            "nonce",
        ];
        if reserved.contains(&k.as_str()) {
            return Err(fail(file, &field, "is set by rekey itself"));
        }
        if k.is_empty() || v.is_empty() {
            return Err(fail(file, &field, "names and values must not be empty"));
        }
        ctx.declared(&field, v)?;
    }
    for (field, v) in [
        (
            "oauth.identity_subject_field",
            Some(&o.identity_subject_field),
        ),
        ("oauth.identity_email_field", Some(&o.identity_email_field)),
        ("oauth.identity_name_field", o.identity_name_field.as_ref()),
        (
            "oauth.granted_scopes_field",
            o.granted_scopes_field.as_ref(),
        ),
    ] {
        if let Some(v) = v {
            if v.is_empty() || v.split('.').any(str::is_empty) {
                return Err(fail(file, field, "must be a dotted path like `user.id`"));
            }
        }
    }
    if o.refresh_window_secs == 0 || o.refresh_window_secs > 86_400 {
        return Err(fail(
            file,
            "oauth.refresh_window_secs",
            "must be between 1 and 86400",
        ));
    }
    for (field, v) in [
        ("oauth.refresh_token_idle_days", o.refresh_token_idle_days),
        ("oauth.refresh_token_max_days", o.refresh_token_max_days),
    ] {
        if v.is_some_and(|d| d == 0 || d > 3650) {
            return Err(fail(file, field, "must be between 1 and 3650"));
        }
    }
    if let (Some(idle), Some(max)) = (o.refresh_token_idle_days, o.refresh_token_max_days) {
        if idle > max {
            return Err(fail(
                file,
                "oauth.refresh_token_idle_days",
                "is longer than refresh_token_max_days",
            ));
        }
    }
    if let Some(pfx) = &o.authorization_prefix {
        if pfx.is_empty() || pfx.len() > 64 || pfx.chars().any(char::is_control) {
            return Err(fail(
                file,
                "oauth.authorization_prefix",
                "must be 1–64 printable characters, e.g. \"Bearer \"",
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (i, m) in o.client_auth_methods.iter().enumerate() {
        if !seen.insert(*m) {
            return Err(fail(
                file,
                &format!("oauth.client_auth_methods[{i}]"),
                "is listed twice",
            ));
        }
    }
    Ok(())
}

pub(crate) fn validate_runbook(
    ctx: &Ctx<'_>,
    name: &str,
    rb: &Runbook,
    kind: Option<&str>,
) -> Result<(), CatalogError> {
    let file = ctx.file;
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
    let is_revoke = name.starts_with("revoke");
    if is_revoke {
        for (field, set) in [
            ("overlap", rb.overlap.is_some()),
            ("rotator", rb.rotator.is_some()),
            (
                "invalidates_old_immediately",
                rb.invalidates_old_immediately.is_some(),
            ),
        ] {
            if set {
                return Err(fail(
                    file,
                    &format!("{name}.{field}"),
                    "only applies to rotation",
                ));
            }
        }
    }
    if let Some(u) = &rb.console_url {
        ctx.url_with(&format!("{name}.console_url"), u, true)?;
    }
    if rb.overlap == Some(true) && rb.invalidates_old_immediately == Some(true) {
        return Err(fail(
            file,
            &format!("{name}.invalidates_old_immediately"),
            "contradicts overlap = true (old and new cannot both be valid)",
        ));
    }
    if let Some(r) = rb.rotator {
        let field = format!("{name}.rotator");
        if !r.is_automated() && rb.method == RunbookMethod::Api {
            return Err(fail(
                file,
                &field,
                format!(
                    "`{}` is operator-driven: set method = \"manual\"",
                    r.as_str()
                ),
            ));
        }
        if r.is_automated() && rb.method == RunbookMethod::Api && !is_revoke && !r.is_implemented()
        {
            return Err(fail(
                file,
                &field,
                format!(
                    "rekey has no `{}` rotator yet: set method = \"manual\" (the steps stay the runbook)",
                    r.as_str()
                ),
            ));
        }
        if let Some(k) = r.kind() {
            let applies = match kind {
                Some(kind) => kind == k,
                None => ctx.p.auth_kinds.iter().any(|x| x == k),
            };
            if !applies {
                return Err(fail(
                    file,
                    &field,
                    format!(
                        "`{}` rotates `{k}` credentials, which this runbook does not cover",
                        r.as_str()
                    ),
                ));
            }
        }
        if r == Rotator::RsaSecondSlot && rb.overlap != Some(true) {
            return Err(fail(
                file,
                &format!("{name}.overlap"),
                "must be true for `rsa_second_slot` (two key slots)",
            ));
        }
    } else if !is_revoke && rb.method == RunbookMethod::Api {
        return Err(fail(
            file,
            &format!("{name}.rotator"),
            "required when rotate.method = \"api\" (which rotator does it?)",
        ));
    }
    if kind.is_some() && !rb.kinds.is_empty() {
        return Err(fail(file, &format!("{name}.kinds"), "cannot be nested"));
    }
    for (k, sub) in &rb.kinds {
        let field = format!("{name}.kinds.{k}");
        if !ctx.p.auth_kinds.contains(k) {
            return Err(fail(file, &field, format!("`{k}` is not in auth_kinds")));
        }
        if is_revoke && sub.method == RunbookMethod::Api && !is_oauth_kind(k) && k != "api_key" {
            return Err(fail(
                file,
                &format!("{field}.method"),
                "`api` revocation goes through the OAuth revocation endpoint; use \"manual\" for this kind",
            ));
        }
        validate_runbook(ctx, &field, sub, Some(k))?;
    }
    Ok(())
}

/// `base`'s field `f` (`base` itself when `f` is empty).
fn subfield(base: &str, f: &str) -> String {
    if f.is_empty() {
        base.to_string()
    } else {
        format!("{base}.{f}")
    }
}

pub(crate) fn validate_forms(ctx: &Ctx<'_>) -> Result<(), CatalogError> {
    for (kind, form) in &ctx.p.key_forms {
        let base = format!("key_forms.{kind}");
        if !STATIC_KINDS.contains(&kind.as_str()) {
            return Err(ctx.err(&base, "key forms are only for static kinds (not oauth2_*)"));
        }
        if !ctx.p.auth_kinds.contains(kind) {
            return Err(ctx.err(&base, format!("`{kind}` is not in auth_kinds")));
        }
        forms::validate_form(kind, form).map_err(|(f, r)| ctx.err(&subfield(&base, &f), r))?;
        if let Some(h) = &form.help {
            check_text(ctx.file, &format!("{base}.help"), h)?;
        }
    }
    Ok(())
}

pub(crate) fn validate_probes(ctx: &Ctx<'_>) -> Result<(), CatalogError> {
    let p = ctx.p;
    let mut explicit: BTreeMap<&str, usize> = BTreeMap::new();
    let mut catch_all = None;
    for (i, pr) in p.probes.iter().enumerate() {
        let base = format!("probe[{i}]");
        probe::validate_probe(pr).map_err(|(f, r)| ctx.err(&subfield(&base, &f), r))?;
        for (j, k) in pr.kinds.iter().enumerate() {
            if !p.auth_kinds.contains(k) {
                return Err(ctx.err(
                    &format!("{base}.kinds[{j}]"),
                    format!("`{k}` is not in auth_kinds"),
                ));
            }
            if let Some(other) = explicit.insert(k, i) {
                return Err(ctx.err(
                    &format!("{base}.kinds[{j}]"),
                    format!("`{k}` already has probe[{other}]"),
                ));
            }
        }
        if pr.kinds.is_empty() {
            if let Some(other) = catch_all {
                return Err(ctx.err(
                    &format!("{base}.kinds"),
                    format!("probe[{other}] already covers all kinds; list kinds explicitly"),
                ));
            }
            catch_all = Some(i);
        }
        let covered: Vec<&str> = if pr.kinds.is_empty() {
            p.auth_kinds.iter().map(String::as_str).collect()
        } else {
            pr.kinds.iter().map(String::as_str).collect()
        };
        match pr.protocol {
            ProbeProtocol::Http => {
                let aws = covered.contains(&"aws_access_key");
                if pr.aws_sigv4.is_some() && covered.iter().any(|k| *k != "aws_access_key") {
                    return Err(ctx.err(
                        &format!("{base}.aws_sigv4"),
                        "only applies to a probe for kind `aws_access_key` alone",
                    ));
                }
                if aws && pr.aws_sigv4.is_none() {
                    return Err(ctx.err(
                        &format!("{base}.aws_sigv4"),
                        "required: aws_access_key credentials are used to sign, not sent",
                    ));
                }
                if let Some(u) = &pr.url {
                    ctx.url(&format!("{base}.url"), u)?;
                }
                for (h, v) in &pr.headers {
                    ctx.declared(&format!("{base}.headers.{h}"), v)?;
                }
            }
            ProbeProtocol::Postgres | ProbeProtocol::Mysql => {
                if covered.iter().any(|k| *k != "basic") {
                    return Err(ctx.err(
                        &format!("{base}.protocol"),
                        "database probes log in with a user name and password: list kinds = [\"basic\"]",
                    ));
                }
                for (f, v) in [
                    ("host", &pr.host),
                    ("port", &pr.port),
                    ("database", &pr.database),
                ] {
                    if let Some(v) = v {
                        ctx.declared(&format!("{base}.{f}"), v)?;
                    }
                }
            }
        }
    }
    Ok(())
}

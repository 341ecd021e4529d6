//! OpenID Connect ID token validation: signature (JWKS), iss, aud, exp, nonce.

use crate::{Http, OAuthError};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

pub struct IdTokenCheck<'a> {
    pub jwks_uri: &'a str,
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
}

const ALLOWED: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Validate `token` and return its claims. Symmetric and `none` algorithms
/// are refused: the client secret must never be usable to forge identities.
pub async fn validate_id_token(
    http: &Http,
    check: &IdTokenCheck<'_>,
    token: &str,
) -> Result<Value, OAuthError> {
    let bad = |m: &str| OAuthError::IdToken(m.to_string());
    let header = jsonwebtoken::decode_header(token).map_err(|_| bad("not a JWT"))?;
    if !ALLOWED.contains(&header.alg) {
        return Err(bad("unsupported signing algorithm"));
    }
    let r = http.send(http.inner().get(check.jwks_uri)).await?;
    if r.status != 200 {
        return Err(OAuthError::Unavailable {
            status: r.status,
            retry_after: r.retry_after,
        });
    }
    let jwks: JwkSet = serde_json::from_slice(&r.body)
        .map_err(|_| OAuthError::Malformed("JWKS is not valid".into()))?;
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid),
        None if jwks.keys.len() == 1 => jwks.keys.first(),
        None => None,
    }
    .ok_or_else(|| bad("no matching key in the provider's JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| bad("unusable key in JWKS"))?;
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[check.issuer]);
    v.set_audience(&[check.client_id]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.leeway = 60;
    let data = jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        OAuthError::IdToken(
            match e.kind() {
                K::InvalidSignature => "bad signature",
                K::InvalidIssuer => "wrong issuer",
                K::InvalidAudience => "wrong audience",
                K::ExpiredSignature => "expired",
                K::MissingRequiredClaim(_) => "missing a required claim",
                _ => "invalid",
            }
            .to_string(),
        )
    })?;
    if data.claims.get("nonce").and_then(Value::as_str) != Some(check.nonce) {
        return Err(bad("nonce does not match this login"));
    }
    // With several audiences, OIDC requires azp to be us.
    if let Some(Value::Array(auds)) = data.claims.get("aud") {
        if auds.len() > 1 && data.claims.get("azp").and_then(Value::as_str) != Some(check.client_id)
        {
            return Err(bad("azp is not this client"));
        }
    }
    Ok(data.claims)
}

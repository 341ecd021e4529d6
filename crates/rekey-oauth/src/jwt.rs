//! Self-signed JWTs for probes of key-based credentials: the RFC 7523 JWT
//! bearer grant (Google service-account keys) and Snowflake's key-pair JWT.

use crate::token::parse_token_response;
use crate::{Http, OAuthError, TokenSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 7523 §2.1: exchange an assertion signed with the service account's
/// key for an access token at `token_url` (Google: the key file's
/// `token_uri`). `pem` is the key file's `private_key`.
pub async fn jwt_bearer(
    http: &Http,
    token_url: &str,
    issuer: &str,
    pem: &str,
    key_id: Option<&str>,
    scopes: &[String],
) -> Result<TokenSet, OAuthError> {
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| {
        OAuthError::Config("the service-account key is not an RSA private key in PEM".into())
    })?;
    let iat = now();
    let claims = json!({
        "iss": issuer, "scope": scopes.join(" "), "aud": token_url, "iat": iat, "exp": iat + 3600,
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = key_id.map(str::to_string);
    let assertion = jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|e| OAuthError::Config(format!("cannot sign the assertion: {e}")))?;
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", assertion.as_str()),
    ];
    let req = http
        .inner()
        .post(token_url)
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form);
    parse_token_response(http.send(req).await?)
}

/// Snowflake key-pair authentication: `iss` = `ACCOUNT.USER.SHA256:<fp>`,
/// `sub` = `ACCOUNT.USER`, at most an hour, RS256 with the user's key.
/// `account` is the account identifier without region or cloud (a locator
/// like `xy12345.us-east-2.aws` keeps `XY12345`); both parts upper-cased.
pub fn snowflake_keypair_jwt(
    pkcs1_der: &[u8],
    account: &str,
    user: &str,
    fingerprint: &str,
) -> Result<String, OAuthError> {
    let account = account
        .split('.')
        .next()
        .unwrap_or(account)
        .to_ascii_uppercase();
    let qualified = format!("{account}.{}", user.to_ascii_uppercase());
    let iat = now();
    let claims = json!({
        "iss": format!("{qualified}.{fingerprint}"), "sub": qualified, "iat": iat, "exp": iat + 3600,
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_der(pkcs1_der),
    )
    .map_err(|e| OAuthError::Config(format!("cannot sign the key-pair JWT: {e}")))
}

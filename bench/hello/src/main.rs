//! The baseline of `bench/run`: what axum and tokio answer with nothing
//! behind them. `GET /` is "hello"; `POST /token` answers an OAuth token
//! request with a token valid for a day, so rekey's OAuth credential fetch
//! can be measured with a token it never needs to refresh.
//! Usage: `bench-hello 127.0.0.1:PORT`.

use axum::routing::{get, post};
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let app = Router::new().route("/", get(|| async { "hello" })).route(
        "/token",
        post(|| async {
            (
                [("content-type", "application/json")],
                r#"{"access_token":"bench-access-token","token_type":"Bearer","expires_in":86400}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("bench-hello listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}

//! Sign-in lock-out as a weapon: anyone could lock any user out (5 bad
//! passwords, up to an hour), and user names had no length limit (60 KB
//! names were kept in memory). The lock now binds the sources that caused
//! it; the real user, from another address, gets in after a delay.

use rekey_service::Role;
use rekey_testkit::{Db, TestServer};
use reqwest::StatusCode;
use std::net::{IpAddr, Ipv4Addr};

/// A browser whose connections come from `127.0.0.N` (all of 127/8 is
/// loopback on Linux), so the server sees distinct client addresses.
fn browser_from(n: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
        .build()
        .unwrap()
}

async fn sign_in(s: &TestServer, from: u8, user: &str, pw: &str) -> (StatusCode, String) {
    let r = browser_from(from)
        .post(format!("{}/ui/login", s.base))
        .form(&[("username", user), ("password", pw)])
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_out_from_one_address_does_not_lock_the_user_out() {
    let s = TestServer::start(Db::Sqlite).await;
    let pw = rekey_core::SecretString::new("correct horse battery".to_string());
    s.rekey
        .create_user(
            &rekey_service::Ctx::cli("default"),
            "ana",
            &pw,
            Role::Viewer,
        )
        .await
        .unwrap();
    // The attacker, from .2, locks the name.
    for _ in 0..5 {
        assert_eq!(
            sign_in(&s, 2, "ana", "wrong password!!").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (st, html) = sign_in(&s, 2, "ana", "correct horse battery").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{html}");
    // Ana, from .3, still gets in (after the slow lane's delay).
    let started = std::time::Instant::now();
    let (st, html) = sign_in(&s, 3, "ana", "correct horse battery").await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{html}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_user_names_are_refused_and_not_remembered() {
    let s = TestServer::start(Db::Sqlite).await;
    let long = "a".repeat(60_000);
    for _ in 0..8 {
        let (st, _) = sign_in(&s, 4, &long, "x").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    // Not counted against the address either: a real sign-in from it works
    // at once (a 60 KB name can never be a user).
    let pw = rekey_core::SecretString::new("correct horse battery".to_string());
    s.rekey
        .create_user(
            &rekey_service::Ctx::cli("default"),
            "bo_b",
            &pw,
            Role::Viewer,
        )
        .await
        .unwrap();
    let (st, html) = sign_in(&s, 4, "bo_b", "correct horse battery").await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{html}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_spraying_names_is_slowed() {
    let s = TestServer::start(Db::Sqlite).await;
    for i in 0..20 {
        let (st, _) = sign_in(&s, 5, &format!("user{i}"), "guess-guess").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    // A burst of five at once: the address may try once a second, so
    // some are checked and the others told to wait.
    let names: Vec<String> = (0..5).map(|i| format!("user-x{i}")).collect();
    let burst =
        futures_util::future::join_all(names.iter().map(|n| sign_in(&s, 5, n, "guess-guess")))
            .await;
    let refused = burst
        .iter()
        .filter(|(st, _)| *st == StatusCode::TOO_MANY_REQUESTS)
        .count();
    let checked = burst
        .iter()
        .filter(|(st, _)| *st == StatusCode::UNAUTHORIZED)
        .count();
    assert!(refused >= 1 && checked >= 1, "{burst:?}");
    // Another address is not slowed.
    let (st, _) = sign_in(&s, 6, "user-z", "guess-guess").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

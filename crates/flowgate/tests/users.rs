//! User administration by superusers.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn superuser_creates_lists_updates_and_deletes_users() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let res = s
        .client
        .post(s.url("/api/v1/users/"))
        .bearer_auth(&admin)
        .json(&json!({"username": "alice", "password": "alice-Passw0rd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Duplicates, whatever the case.
    let (status, body) = split(
        s.client
            .post(s.url("/api/v1/users/"))
            .bearer_auth(&admin)
            .json(&json!({"username": "ALICE", "password": "another-pw-1"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            detail("This username is unavailable.")
        )
    );
    // Weak passwords and odd names are refused with the field named.
    let (status, body) = split(
        s.client
            .post(s.url("/api/v1/users/"))
            .bearer_auth(&admin)
            .json(&json!({"username": "bob", "password": "short"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "password"]));
    let (status, _) = split(
        s.client
            .post(s.url("/api/v1/users/"))
            .bearer_auth(&admin)
            .json(&json!({"username": "bo\u{0}b", "password": "long-enough-pw"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = split(
        s.client
            .post(s.url("/api/v1/users/"))
            .bearer_auth(&admin)
            .json(&json!({"username": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);

    let (status, list) = s
        .get_with_token("/api/v1/users/?skip=0&limit=10", &admin)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["total_count"], 2);
    let names: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["langflow", "alice"]);
    let (_, page) = s
        .get_with_token("/api/v1/users/?skip=1&limit=1", &admin)
        .await;
    assert_eq!(page["users"].as_array().unwrap().len(), 1);
    assert_eq!(page["users"][0]["username"], "alice");

    // Alice can use her account, then is deactivated: login and tokens stop.
    let alice = s.login("alice", "alice-Passw0rd").await;
    let (key, _) = s.key(&alice, json!({"name": "alice-key"})).await;
    assert_eq!(s.get_with_key("/api/v1/users/whoami", &key).await.0, 200);
    let res = s
        .client
        .patch(s.url(&format!("/api/v1/users/{id}")))
        .bearer_auth(&admin)
        .json(&json!({"is_active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["is_active"], false);
    let (status, body) = split(s.login_response("alice", "alice-Passw0rd").await).await;
    assert_eq!(
        (status, body),
        (StatusCode::UNAUTHORIZED, detail("Inactive user"))
    );
    assert_eq!(
        s.get_with_token("/api/v1/users/whoami", &alice).await,
        (StatusCode::UNAUTHORIZED, detail("Inactive user"))
    );
    assert_eq!(
        s.get_with_key("/api/v1/users/whoami", &key).await,
        (StatusCode::FORBIDDEN, detail("Invalid API key"))
    );

    // Reactivated with a new password.
    let res = s
        .client
        .patch(s.url(&format!("/api/v1/users/{id}")))
        .bearer_auth(&admin)
        .json(&json!({"is_active": true, "password": "new-alice-pw-9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let alice = s.login("alice", "new-alice-pw-9").await;
    assert_eq!(s.get_with_key("/api/v1/users/whoami", &key).await.0, 200);

    // Non-superusers: no listing, no deleting, no self-promotion; may change their password.
    assert_eq!(
        s.get_with_token("/api/v1/users/", &alice).await,
        (
            StatusCode::FORBIDDEN,
            detail("The user doesn't have enough privileges")
        )
    );
    let (status, _) = split(
        s.client
            .patch(s.url(&format!("/api/v1/users/{id}")))
            .bearer_auth(&alice)
            .json(&json!({"is_superuser": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = split(
        s.client
            .patch(s.url(&format!("/api/v1/users/{id}")))
            .bearer_auth(&alice)
            .json(&json!({"password": "alice-own-pw-2"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = split(
        s.client
            .delete(s.url(&format!("/api/v1/users/{id}")))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);

    // Deleting cascades to her keys; the key stops on the very next request.
    let admin_id = s.get_with_token("/api/v1/users/whoami", &admin).await.1["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = split(
        s.client
            .delete(s.url(&format!("/api/v1/users/{admin_id}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            detail("You can't delete your own user account")
        )
    );
    let (status, body) = split(
        s.client
            .delete(s.url(&format!("/api/v1/users/{id}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, detail("User deleted")));
    assert_eq!(s.get_with_key("/api/v1/users/whoami", &key).await.0, 403);
    let (status, body) = split(
        s.client
            .delete(s.url(&format!("/api/v1/users/{id}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, detail("User not found"))
    );
    let (_, list) = s.get_with_token("/api/v1/users/", &admin).await;
    assert_eq!(list["total_count"], 1);
}

#[tokio::test]
async fn public_signup_is_off_by_default() {
    let s = TestServer::start().await;
    let (status, body) = split(
        s.client
            .post(s.url("/api/v1/users/"))
            .json(&json!({"username": "eve", "password": "eve-Passw0rd"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::FORBIDDEN,
            detail("No authentication credentials provided")
        )
    );
}

#[tokio::test]
async fn signup_when_enabled_creates_inactive_users_unless_configured() {
    let s = TestServer::start_with(&[("LANGFLOW_ENABLE_SIGNUP", "true")]).await;
    let (status, body) = split(
        s.client
            .post(s.url("/api/v1/users/"))
            .json(&json!({"username": "eve", "password": "eve-Passw0rd", "is_superuser": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body["is_active"], false);
    assert_eq!(
        body["is_superuser"], false,
        "sign-up can never make a superuser"
    );

    let s = TestServer::start_with(&[
        ("LANGFLOW_ENABLE_SIGNUP", "True"),
        ("LANGFLOW_NEW_USER_IS_ACTIVE", "True"),
    ])
    .await;
    let (status, body) = split(
        s.client
            .post(s.url("/api/v1/users/"))
            .json(&json!({"username": "eve", "password": "eve-Passw0rd"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body["is_active"], true);
    s.login("eve", "eve-Passw0rd").await;
}

#[tokio::test]
async fn bcrypt_passwords_from_langflow_log_in_and_are_rehashed() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let (id, _) = s.user(&admin, "imported").await;
    // Replace the hash with a bcrypt one, as a Langflow database would hold.
    // bcrypt("legacy-pw-123"), made with Python's bcrypt as Langflow does.
    let legacy = "$2b$04$oiA4eCQ5ngXePYOxZKiHGuru9GkIxxuL8NOzzMjDyHe4pZqxRkZWa";
    s.sql(&format!(
        "UPDATE users SET password_hash = '{legacy}' WHERE id = '{id}'"
    ));
    let hash_of = || {
        s.sql(&format!(
            "SELECT password_hash FROM users WHERE id = '{id}'"
        ))
    };
    assert_eq!(hash_of(), legacy);
    let res = s.login_response("imported", "wrong-pw").await;
    assert_eq!(res.status(), 401);
    s.login("imported", "legacy-pw-123").await;
    assert!(hash_of().starts_with("$argon2id$"), "re-hashed on success");
    s.login("imported", "legacy-pw-123").await;
}

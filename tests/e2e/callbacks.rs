//! Callbacks survive their receiver: down for a while then back, every
//! callback arrives (signed); never back, every callback is dead-lettered
//! after its maximum age, visibly. None is lost.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::gateway::{Platform, Received, receiver};
use eddy_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_down_then_back_gets_everything_and_a_dead_one_is_dead_lettered() {
    let p = Platform::start(&[
        ("EDDY_CALLBACK_BACKOFF_MS", "100"),
        ("EDDY_CALLBACK_MAX_AGE_MS", "5000"),
    ]);
    let (key, secret) = p.tenant("acme", json!({})).await;
    p.deploy(&key, "echo", "echo", "").await;

    let (back, never) = (free_port(), free_port());
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = p
            .req(Method::POST, "/invoke/echo", &key)
            .header("x-callback-url", format!("http://127.0.0.1:{back}/hook"))
            .body(format!(r#"{{"n":{i}}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut lost = Vec::new();
    for i in 0..3 {
        let r = p
            .req(Method::POST, "/invoke/echo", &key)
            .header("x-callback-url", format!("http://127.0.0.1:{never}/hook"))
            .body(format!(r#"{{"lost":{i}}}"#))
            .send()
            .await
            .unwrap();
        lost.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // The receiver is down while the first attempts fail.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let received: Received = Arc::default();
    let _stop = receiver(back, &secret, received.clone()).await;
    wait_for(Duration::from_secs(30), "all 20 callbacks", || {
        received
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<HashSet<_>>()
            .len()
            == 20
    });
    let got: HashSet<String> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    let want: HashSet<String> = ids
        .iter()
        .map(|id| format!("msg_invocation_{id}"))
        .collect();
    assert_eq!(got, want);
    for (_, body) in received.lock().unwrap().iter() {
        assert_eq!(body["status"], "succeeded");
    }

    // The one that never comes back: dead-lettered after the max age.
    let dead = p
        .until(&key, "/callbacks/dead-letters", |v| {
            v.as_array().is_some_and(|a| a.len() == 3)
        })
        .await;
    let dead_ids: HashSet<&str> = dead
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(dead_ids, lost.iter().map(String::as_str).collect());
    for d in dead.as_array().unwrap() {
        assert_eq!(d["kind"], "invocation");
        assert!(d["attempts"].as_u64().unwrap() >= 3, "{d}");
        assert!(
            d["error"].as_str().unwrap().contains("Connection refused"),
            "{d}"
        );
    }
    // Delivered and dead-lettered callbacks leave nothing in the stream,
    // and nothing of the tenant is left in the callbacks' due index.
    let client = redis::Client::open(p.redis_url.as_str()).unwrap();
    let c = client.get_multiplexed_async_connection().await.unwrap();
    let stream = eddy_protocol::keys::callbacks(&eddy_protocol::TenantId::new("acme").unwrap());
    wait_until(
        Duration::from_secs(10),
        "the callbacks stream trimmed",
        || {
            let mut c = c.clone();
            let stream = stream.clone();
            async move {
                let len: u64 = redis::cmd("XLEN")
                    .arg(&stream)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                let marked: Option<f64> = redis::cmd("ZSCORE")
                    .arg(eddy_protocol::keys::DUE_CALLBACKS)
                    .arg("acme")
                    .query_async(&mut c)
                    .await
                    .unwrap();
                (len == 0 && marked.is_none()).then_some(())
            }
        },
    )
    .await;
}

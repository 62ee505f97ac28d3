//! A deployment of separate processes on one Redis: 2 gateways, 3 workers,
//! 2 controllers. Under load the leading controller is killed, a worker is
//! killed, and the function is rolled to a new version: nothing is lost, the
//! other controller takes over, work accepted before the roll runs the old
//! version and work after it the new one, on both gateways (each caches the
//! current spec; the roll reaches the other one's cache over pub/sub).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use eddy_protocol::InvocationStatus;
use eddy_tests::*;

const ADMIN: &str = "admin-secret";

/// Creates tenant `id` through the gateway at `base`; returns its API key.
async fn create_tenant(http: &reqwest::Client, base: &str, id: &str) -> String {
    let r = http
        .post(format!("{base}/tenants"))
        .bearer_auth(ADMIN)
        .json(&json!({ "id": id }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_three_workers_two_controllers_survive_kills_and_a_roll() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let cache = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port()];
    let _g: Vec<EddyProcess> = ports
        .iter()
        .map(|p| {
            EddyProcess::gateway_with(&redis.url(), cache.path(), *p, &[("EDDY_THREADS", "1")])
        })
        .collect();
    // As the Helm chart runs them: one runtime thread per pod.
    let env = [
        ("EDDY_THREADS", "1"),
        ("EDDY_LEASE_MS", "1000"),
        ("EDDY_MAX_DELIVERIES", "20"),
        ("EDDY_CONCURRENCY", "8"),
    ];
    let _w1 = EddyProcess::worker(&redis.url(), cache.path(), "w1", &env);
    let _w2 = EddyProcess::worker(&redis.url(), cache.path(), "w2", &env);
    let mut w3 = EddyProcess::worker(&redis.url(), cache.path(), "w3", &env);
    let mut c1 = EddyProcess::controller(&redis.url(), &[("EDDY_CONTROLLER_ID", "c1")]);
    let mut c2 = EddyProcess::controller(&redis.url(), &[("EDDY_CONTROLLER_ID", "c2")]);
    let http = reqwest::Client::new();
    let base = |i: usize| format!("http://127.0.0.1:{}", ports[i % 2]);

    let key = create_tenant(&http, &base(0), "acme").await;
    // A second key, trusted (cached) by both gateways, revoked on one: the
    // other refuses it within a second (pub/sub), not after its cache's 5 s.
    let r = http
        .post(format!("{}/tenants/acme/keys", base(0)))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let (spare_id, spare) = (
        v["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    );
    for i in 0..2 {
        let r = http
            .get(format!("{}/functions", base(i)))
            .bearer_auth(&spare)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = http
        .delete(format!("{}/tenants/acme/keys/{spare_id}", base(0)))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let revoked_at = std::time::Instant::now();
    let status = |i: usize| {
        let (http, spare, url) = (http.clone(), spare.clone(), base(i));
        async move {
            http.get(format!("{url}/functions"))
                .bearer_auth(&spare)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        status(0).await,
        StatusCode::UNAUTHORIZED,
        "the revoking gateway"
    );
    wait_until(
        Duration::from_secs(1),
        "the other gateway to refuse the key",
        || async { (status(1).await == StatusCode::UNAUTHORIZED).then_some(()) },
    )
    .await;
    assert!(revoked_at.elapsed() < Duration::from_secs(1));

    let deploy = |guest: &'static str| {
        let (http, key, url) = (http.clone(), key.clone(), base(1));
        async move {
            let r = http
                .put(format!("{url}/functions/job"))
                .bearer_auth(&key)
                .body(wasm(guest))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            r.json::<Value>().await.unwrap()["version"]
                .as_u64()
                .unwrap()
        }
    };
    assert_eq!(deploy("echo").await, 1);

    let leader = wait_until(Duration::from_secs(10), "a leader", || async {
        q.leader().await.unwrap()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..1_500usize {
        let r = http
            .post(format!("{}/invoke/job", base(i)))
            .bearer_auth(&key)
            .header("prefer", "respond-async")
            .body(format!(
                r#"{{"text":"invocation {i} of the deployment test"}}"#
            ))
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
        match i {
            300 => {
                // The leading controller dies.
                if leader == "c1" { c1.kill() } else { c2.kill() }
            }
            600 => w3.kill(),
            900 => assert_eq!(deploy("wordcount").await, 2),
            _ => {}
        }
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    let t = tenant("acme");
    let (mut v1, mut v2) = (0, 0);
    for (i, id) in ids.iter().enumerate() {
        let rec = wait_until(Duration::from_secs(60), "every invocation", || async {
            q.invocation(&t, id)
                .await
                .unwrap()
                .filter(|r| r.status.is_final())
        })
        .await;
        assert_eq!(
            (rec.status, rec.completions),
            (InvocationStatus::Succeeded, 1),
            "{id}"
        );
        let out: Value = serde_json::from_slice(rec.output.as_ref().unwrap()).unwrap();
        // Version 1 echoes, version 2 counts words: what ran is what the
        // invocation was pinned to when it was accepted.
        match rec.version {
            Some(1) => {
                assert!(out.get("text").is_some(), "{out}");
                v1 += 1;
            }
            Some(2) => {
                assert!(out.get("words").is_some(), "{out}");
                v2 += 1;
            }
            other => panic!("version {other:?}"),
        }
        // Gateways cache the current spec; the deploy (through gateway 1,
        // after invocation 900) reaches gateway 0's cache over pub/sub: from
        // its second request after the deploy on, it runs the new version.
        match i {
            0..=900 => assert_eq!(rec.version, Some(1), "invocation {i}"),
            901 | 902 => {}
            _ => assert_eq!(rec.version, Some(2), "invocation {i}"),
        }
    }
    assert_eq!(v1 + v2, 1_500);
    // The other controller leads now, and it dropped the dead worker.
    let other = if leader == "c1" { "c2" } else { "c1" };
    wait_until(
        Duration::from_secs(20),
        "the other controller to lead",
        || async {
            let s = q.controller_state().await.unwrap()?;
            (s.leader == other && s.workers.iter().all(|w| w.id != "w3")).then_some(())
        },
    )
    .await;
}

//! Redis Cluster: the core scenarios on a local 3-primary cluster (each
//! primary with a replica): tenants spread over the primaries, sync and
//! async invocations, signed callbacks, runs that cross tenants' slots, a
//! dead letter, a worker SIGKILLed mid-run and a primary failed over to its
//! replica mid-run. Nothing is lost, nothing runs twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::gateway::{ADMIN, Received, receiver};
use eddy_tests::*;

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn req(&self, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key)
    }

    async fn json(&self, key: &str, path: &str) -> Value {
        let r = self.req(Method::GET, path, key).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.unwrap()
    }
}

/// The number of entries ever added to a stream (XINFO entries-added),
/// following the cluster's redirects.
fn entries_added(cluster: &RedisCluster, key: &str) -> u64 {
    let out = cluster.cli(cluster.ports[0], &["-c", "XINFO", "STREAM", key]);
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == "entries-added")
        .unwrap_or_else(|| panic!("XINFO STREAM {key}: {out}"));
    lines[at + 1].trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_scenarios_on_a_three_primary_cluster_with_a_worker_crash_and_a_failover() {
    let cluster = RedisCluster::start(3, 1);
    let url = cluster.url();
    let cache = tempfile::tempdir().unwrap();
    let port = free_port();
    let allow = ("EDDY_CALLBACK_ALLOWLIST", "127.0.0.1");
    let _gateway = EddyProcess::gateway_with(&url, cache.path(), port, &[allow]);
    let worker_env = [allow, ("EDDY_LEASE_MS", "1500")];
    let mut w1 = EddyProcess::worker(&url, cache.path(), "c1", &worker_env);
    let _w2 = EddyProcess::worker(&url, cache.path(), "c2", &worker_env);
    let _controller = EddyProcess::controller(&url, &[]);
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };

    // Six tenants: their hash tags land on different primaries.
    let mut tenants: Vec<(String, String, String)> = Vec::new();
    for i in 0..6 {
        let id = format!("tenant-{i}");
        let r = api
            .req(Method::POST, "/tenants", ADMIN)
            .json(&json!({ "id": id }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        let body: Value = r.json().await.unwrap();
        let (key, secret) = (
            body["key"].as_str().unwrap().to_string(),
            body["webhook_secret"].as_str().unwrap().to_string(),
        );
        for (name, guest) in [
            ("echo", "echo"),
            ("fanout", "fanout"),
            ("broken", "fx-fail"),
        ] {
            let r = api
                .req(Method::PUT, &format!("/functions/{name}"), &key)
                .body(wasm(guest))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        }
        tenants.push((id, key, secret));
    }
    let holding: Vec<u16> = cluster
        .primaries()
        .into_iter()
        .filter(|p| cluster.cli(*p, &["DBSIZE"]).parse::<u64>().unwrap_or(0) > 0)
        .collect();
    assert!(
        holding.len() >= 2,
        "the tenants' keys spread over the primaries: {holding:?}"
    );

    // Sync: the reply travels over pub/sub from whichever node ran the
    // completion script to the gateway's subscription.
    for (id, key, _) in &tenants {
        let r = api
            .req(Method::POST, "/invoke/echo", key)
            .body(format!(r#"{{"hello":"{id}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({ "hello": id.as_str() })
        );
    }

    // Async with a signed callback, and a dead letter, per tenant.
    let hook = free_port();
    let received: Received = Arc::default();
    let (_, _, secret0) = &tenants[0];
    let _stop = receiver(hook, secret0, received.clone()).await;
    let (_, key0, _) = &tenants[0];
    let r = api
        .req(Method::POST, "/invoke/echo", key0)
        .header("x-callback-url", format!("http://127.0.0.1:{hook}/hook"))
        .body(r#"{"async":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let async_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (_, key, _) in &tenants {
        let r = api
            .req(Method::POST, "/invoke/broken", key)
            .header("prefer", "respond-async")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }

    // Runs on every tenant: B=3, D=4 is 121 invocations each.
    let mut runs: HashMap<String, (String, String)> = HashMap::new();
    for (id, key, _) in &tenants {
        let r = api
            .req(Method::POST, "/invoke/fanout", key)
            .header("prefer", "respond-async")
            .body(r#"{"branch":3,"depth":4}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let run = r.json::<Value>().await.unwrap()["run_id"]
            .as_str()
            .unwrap()
            .to_string();
        runs.insert(id.clone(), (key.clone(), run));
    }
    // Mid-run: SIGKILL a worker, and fail one primary over to its replica
    // (a coordinated failover: the replica takes over with everything the
    // primary acknowledged).
    tokio::time::sleep(Duration::from_millis(150)).await;
    w1.kill();
    let replica = cluster
        .ports
        .iter()
        .copied()
        .find(|p| cluster.cli(*p, &["ROLE"]).starts_with("slave"))
        .expect("a replica");
    // A manual failover gives up if the replica cannot catch up with its
    // primary within Redis's 5 s; on a loaded machine it is asked again.
    let mut asked = std::time::Instant::now();
    assert_eq!(cluster.cli(replica, &["CLUSTER", "FAILOVER"]), "OK");
    wait_for(Duration::from_secs(60), "the replica to take over", || {
        if cluster.cli(replica, &["ROLE"]).starts_with("master") {
            return true;
        }
        if asked.elapsed() > Duration::from_secs(6) {
            asked = std::time::Instant::now();
            let _ = cluster.cli(replica, &["CLUSTER", "FAILOVER"]);
        }
        false
    });
    cluster.wait_ok();
    let _w1 = EddyProcess::worker(&url, cache.path(), "c1", &worker_env);

    for (id, (key, run)) in &runs {
        let path = format!("/runs/{run}");
        let rec = wait_until(Duration::from_secs(60), &format!("run of {id}"), || {
            let api = &api;
            let path = path.clone();
            async move {
                let v = api.json(key, &path).await;
                (v["status"] != "running").then_some(v)
            }
        })
        .await;
        assert_eq!(rec["status"], "succeeded", "{rec}");
        assert_eq!(
            (rec["total"].as_u64(), rec["succeeded"].as_u64()),
            (Some(121), Some(121)),
            "{rec}"
        );
        // Exactly once: no follow-up was committed twice.
        assert_eq!(
            entries_added(&cluster, &format!("eddy:{{t:{id}}}:q:fanout")),
            121,
            "{id}"
        );
    }
    for (_, key, _) in &tenants {
        let dead = wait_until(Duration::from_secs(30), "the dead letter", || async {
            let v = api.json(key, "/dead-letters").await;
            let items = v.as_array().cloned().unwrap_or_default();
            (!items.is_empty()).then_some(items)
        })
        .await;
        assert_eq!(dead.len(), 1);
    }
    wait_for(Duration::from_secs(20), "the signed callback", || {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|(id, _)| *id == format!("msg_invocation_{async_id}"))
    });
}

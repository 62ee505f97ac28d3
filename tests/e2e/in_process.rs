//! The gateway in the test's own process: `eddy_gateway::app(state)` called
//! request by request with `oneshot`, as the gateway's server does for each
//! request it reads (with the peer's address; without the server's deadline
//! on reading a body), against a `redis-server` of the test's own and with
//! the real module validator. No socket and no `eddy` process: for the tables
//! of what the API answers to bad input.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use eddy_gateway::{AppState, GatewayConfig};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub use crate::gateway::ADMIN;

pub struct Gateway {
    app: axum::Router,
    _redis: eddy_tests::RedisServer,
    _cache: tempfile::TempDir,
}

/// What a request got back.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    /// The body as JSON (`null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Gateway {
    /// A gateway with the defaults of `eddy gateway`, changed by `tweak`.
    pub async fn start(tweak: impl FnOnce(&mut GatewayConfig)) -> Self {
        let redis = eddy_tests::RedisServer::start();
        let cache = tempfile::tempdir().unwrap();
        let mut config = GatewayConfig {
            redis_url: redis.url(),
            admin_key: Some(ADMIN.into()),
            ..GatewayConfig::default()
        };
        tweak(&mut config);
        let validator =
            eddy_cli::module_validator(&config.ceilings, cache.path().to_path_buf(), None).unwrap();
        let state = AppState::connect(config, validator, None).await.unwrap();
        Gateway {
            app: eddy_gateway::app(state),
            _redis: redis,
            _cache: cache,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: &str,
        headers: &[(&str, String)],
        body: impl Into<Body>,
    ) -> Reply {
        // The peer, as the server hands it on (the failed-key throttle
        // counts by it).
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40_000));
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .extension(axum::extract::ConnectInfo(peer));
        if !key.is_empty() {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        for (h, v) in headers {
            req = req.header(*h, v);
        }
        let response = self
            .app
            .clone()
            .oneshot(req.body(body.into()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    pub async fn get(&self, key: &str, path: &str) -> (StatusCode, Value) {
        let r = self.send(Method::GET, path, key, &[], Body::empty()).await;
        (r.status, r.json())
    }

    /// Sends `body` as JSON.
    pub async fn send_json(&self, method: Method, path: &str, key: &str, body: Value) -> Reply {
        let json = [("content-type", "application/json".to_string())];
        self.send(method, path, key, &json, body.to_string()).await
    }

    /// Creates a tenant; returns its key.
    pub async fn tenant(&self, id: &str, quota: Value) -> String {
        let body = json!({ "id": id, "quota": quota });
        let r = self.send_json(Method::POST, "/tenants", ADMIN, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.json()["key"].as_str().unwrap().to_string()
    }

    /// Deploys a guest of `functions/` as `name` (`query`: `?setting=…`).
    pub async fn deploy(&self, key: &str, name: &str, guest: &str, query: &str) {
        let r = self
            .send(
                Method::PUT,
                &format!("/functions/{name}{query}"),
                key,
                &[],
                eddy_tests::wasm(guest),
            )
            .await;
        assert!(r.status.is_success(), "deploy {name}: {:?}", r.body);
    }

    /// The lines of a bulk load's answer.
    pub async fn batch(&self, key: &str, function: &str, body: String) -> Vec<Value> {
        let r = self
            .send(
                Method::POST,
                &format!("/invoke/{function}/batch"),
                key,
                &[],
                body,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        String::from_utf8(r.body.to_vec())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

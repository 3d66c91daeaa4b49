//! An in-memory Kubernetes API server behind tower-test (kube's mocking
//! pattern), for the controller's tests (`operator/tests/controller.rs`) and
//! the CLI's cluster mode (`cli/src/cluster/tests.rs`, included with
//! `#[path]`): both drive the same CRs through the same kube client, so they
//! test against one fake with one set of API semantics.
//!
//! It serves objects under any group: get, list (one namespace or all),
//! create (409 AlreadyExists), replace (409 Conflict unless the
//! resourceVersion read is sent back), merge patch (guarded by a
//! resourceVersion when the patch carries one), server-side apply (creates
//! when missing), and merge patches of the `status` subresource. Every call
//! is logged as `METHOD path` so tests assert exactly what a verb did.

// Each test suite uses its own part of the fake.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{json, Value};

/// Where podwarden's CRs live.
pub const GROUP: &str = "/apis/podwarden.io/v1alpha1";

#[derive(Default)]
pub struct FakeApi {
    /// Object path (`{GROUP}/namespaces/{ns}/{plural}/{name}`) → object.
    pub objects: BTreeMap<String, Value>,
    pub log: Vec<String>,
    rv: u64,
}

/// A request path taken apart: `{prefix}[/namespaces/{ns}]/{plural}[/{name}[/status]]`.
#[derive(Debug, PartialEq)]
struct Location {
    prefix: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    status: bool,
}

impl Location {
    fn parse(path: &str) -> Option<Location> {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // `/api/v1/...` (core) or `/apis/{group}/{version}/...`.
        let n = match *segs.first()? {
            "api" => 2,
            "apis" => 3,
            _ => return None,
        };
        let prefix = format!("/{}", segs.get(..n)?.join("/"));
        let (namespace, rest) = match &segs[n..] {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
            rest => (None, rest),
        };
        let (plural, name, status) = match rest {
            [plural] => (plural, None, false),
            [plural, name] => (plural, Some(name.to_string()), false),
            [plural, name, "status"] => (plural, Some(name.to_string()), true),
            _ => return None,
        };
        Some(Location {
            prefix,
            namespace,
            plural: plural.to_string(),
            name,
            status,
        })
    }

    /// The key of the object this location names (its path without `/status`).
    fn key(&self, name: &str) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/namespaces/{ns}/{}/{name}", self.prefix, self.plural),
            None => format!("{}/{}/{name}", self.prefix, self.plural),
        }
    }

    /// Whether the object stored under `key` is in this collection.
    fn lists(&self, key: &str) -> bool {
        match Location::parse(key) {
            Some(o) => {
                o.prefix == self.prefix
                    && o.plural == self.plural
                    && (self.namespace.is_none() || o.namespace == self.namespace)
            }
            None => false,
        }
    }
}

fn fail(code: StatusCode, reason: &str, message: String) -> (StatusCode, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
               "reason": reason, "code": code.as_u16()}),
    )
}

/// JSON merge patch (RFC 7386): null removes.
fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// `WorkloadPolicy` → `workloadpolicies`, as the CRDs spell their plurals.
fn plural_of(kind: &str) -> String {
    let k = kind.to_ascii_lowercase();
    match k.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{k}s"),
    }
}

impl FakeApi {
    /// Stores `obj` as if created earlier (not logged), under its
    /// apiVersion, kind, namespace and name.
    pub fn insert(&mut self, mut obj: Value) {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let (Some(api_version), Some(kind), Some(ns), Some(name)) = (
            obj["apiVersion"].as_str(),
            obj["kind"].as_str(),
            obj["metadata"]["namespace"].as_str(),
            obj["metadata"]["name"].as_str(),
        ) else {
            panic!("fake API: insert needs apiVersion, kind, metadata.namespace and name: {obj}");
        };
        let prefix = if api_version.contains('/') {
            format!("/apis/{api_version}")
        } else {
            format!("/api/{api_version}")
        };
        let key = format!("{prefix}/namespaces/{ns}/{}/{name}", plural_of(kind));
        self.objects.insert(key, obj);
    }

    /// A podwarden CR by namespace, plural and name.
    pub fn get(&self, ns: &str, plural: &str, name: &str) -> Value {
        self.objects[&format!("{GROUP}/namespaces/{ns}/{plural}/{name}")].clone()
    }

    fn handle(
        &mut self,
        method: &Method,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> (StatusCode, Value) {
        self.log.push(format!("{method} {path}"));
        let Some(loc) = Location::parse(path) else {
            return fail(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{path}: no such resource"),
            );
        };
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body).unwrap()
        };
        self.rv += 1;
        let rv = self.rv.to_string();
        let not_found = || {
            fail(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{path} not found"),
            )
        };
        let conflict = || {
            fail(
                StatusCode::CONFLICT,
                "Conflict",
                "the object has been modified".into(),
            )
        };
        let Some(name) = loc.name.clone() else {
            return match method.as_str() {
                "GET" => {
                    let items: Vec<Value> = self
                        .objects
                        .iter()
                        .filter(|(k, _)| loc.lists(k))
                        .map(|(_, o)| o.clone())
                        .collect();
                    (
                        StatusCode::OK,
                        json!({"apiVersion": "v1", "kind": "List",
                               "metadata": {"resourceVersion": rv}, "items": items}),
                    )
                }
                "POST" => {
                    let Some(name) = body["metadata"]["name"].as_str() else {
                        return fail(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "Invalid",
                            "metadata.name is required".into(),
                        );
                    };
                    let key = loc.key(name);
                    if self.objects.contains_key(&key) {
                        return fail(
                            StatusCode::CONFLICT,
                            "AlreadyExists",
                            format!("{name} exists"),
                        );
                    }
                    let mut o = body;
                    o["metadata"]["resourceVersion"] = json!(rv);
                    o["metadata"]["namespace"] = json!(loc.namespace);
                    o["metadata"]["creationTimestamp"] = json!("2026-11-23T12:00:00Z");
                    self.objects.insert(key, o.clone());
                    (StatusCode::CREATED, o)
                }
                _ => panic!("fake API: unexpected {method} {path}"),
            };
        };
        let key = loc.key(&name);
        let current = self.objects.get(&key).cloned();
        let sent_rv = &body["metadata"]["resourceVersion"];
        let mut o = match (method.as_str(), current) {
            ("GET", Some(o)) => return (StatusCode::OK, o),
            ("GET" | "PUT", None) => return not_found(),
            ("PUT", Some(cur)) => {
                // Optimistic concurrency, as the real API server does.
                if *sent_rv != cur["metadata"]["resourceVersion"] {
                    return conflict();
                }
                body
            }
            ("PATCH", cur) => {
                let apply = content_type.starts_with("application/apply-patch");
                let mut o = match cur {
                    Some(o) => o,
                    // Server-side apply creates; a merge patch needs an object.
                    None if apply && !loc.status => json!({}),
                    None => return not_found(),
                };
                if !sent_rv.is_null() && *sent_rv != o["metadata"]["resourceVersion"] {
                    return conflict();
                }
                if loc.status {
                    merge(&mut o, &json!({"status": body["status"]}));
                } else {
                    merge(&mut o, &body);
                    o["metadata"]["namespace"] = json!(loc.namespace);
                }
                o
            }
            _ => panic!("fake API: unexpected {method} {path}"),
        };
        o["metadata"]["resourceVersion"] = json!(rv);
        self.objects.insert(key, o.clone());
        (StatusCode::OK, o)
    }
}

/// A kube client whose requests the returned fake answers.
pub fn mock_client() -> (kube::Client, Arc<Mutex<FakeApi>>) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let served = api.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let content_type = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let bytes = body.collect().await.unwrap().to_bytes();
            let (status, out) = served.lock().unwrap().handle(
                &parts.method,
                parts.uri.path(),
                &content_type,
                &bytes,
            );
            send.send_response(
                Response::builder()
                    .status(status)
                    .body(Body::from(serde_json::to_vec(&out).unwrap()))
                    .unwrap(),
            );
        }
    });
    (kube::Client::new(svc, "default"), api)
}

#[test]
fn locations_parse_core_group_namespaced_and_cluster_paths() {
    let l =
        Location::parse("/apis/podwarden.io/v1alpha1/namespaces/shop/workloadpolicies/x/status")
            .unwrap();
    assert_eq!(
        l,
        Location {
            prefix: GROUP.into(),
            namespace: Some("shop".into()),
            plural: "workloadpolicies".into(),
            name: Some("x".into()),
            status: true
        }
    );
    assert_eq!(
        l.key("x"),
        format!("{GROUP}/namespaces/shop/workloadpolicies/x")
    );
    let all = Location::parse("/apis/podwarden.io/v1alpha1/workloadpolicies").unwrap();
    assert!(all.lists(&l.key("x")));
    let other_ns =
        Location::parse("/apis/podwarden.io/v1alpha1/namespaces/bank/workloadpolicies").unwrap();
    assert!(!other_ns.lists(&l.key("x")));
    let ns = Location::parse("/api/v1/namespaces").unwrap();
    assert_eq!(
        (ns.prefix.as_str(), ns.plural.as_str()),
        ("/api/v1", "namespaces")
    );
    assert!(Location::parse("/version").is_none());
    assert_eq!(plural_of("WorkloadPolicy"), "workloadpolicies");
    assert_eq!(plural_of("WorkloadBaseline"), "workloadbaselines");
}

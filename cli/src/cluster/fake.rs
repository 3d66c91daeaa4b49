//! An in-memory API server for the podwarden CRs behind tower-test: get,
//! list (one namespace or all), create, replace and merge patch with
//! optimistic concurrency, logging every call as `METHOD path`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{json, Value};

pub const GROUP: &str = "/apis/podwarden.io/v1alpha1";

#[derive(Default)]
pub struct FakeApi {
    /// (namespace, plural, name) → object.
    pub objects: BTreeMap<(String, String, String), Value>,
    pub log: Vec<String>,
    rv: u64,
}

fn fail(code: StatusCode, reason: &str, message: String) -> (StatusCode, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
               "reason": reason, "code": code.as_u16()}),
    )
}

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

impl FakeApi {
    pub fn insert(&mut self, obj: Value) {
        self.rv += 1;
        let mut obj = obj;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let plural = match obj["kind"].as_str() {
            Some("WorkloadPolicy") => "workloadpolicies",
            Some("WorkloadBaseline") => "workloadbaselines",
            other => panic!("fake API: unknown kind {other:?}"),
        };
        let key = (
            obj["metadata"]["namespace"].as_str().unwrap().to_string(),
            plural.to_string(),
            obj["metadata"]["name"].as_str().unwrap().to_string(),
        );
        self.objects.insert(key, obj);
    }

    pub fn get(&self, ns: &str, plural: &str, name: &str) -> Value {
        self.objects[&(ns.into(), plural.into(), name.into())].clone()
    }

    fn handle(&mut self, method: &Method, path: &str, body: &[u8]) -> (StatusCode, Value) {
        self.log.push(format!("{method} {path}"));
        let Some(rest) = path.strip_prefix(GROUP) else {
            return fail(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{path}: no such group"),
            );
        };
        let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let (ns, tail): (Option<&str>, &[&str]) = match segs.as_slice() {
            ["namespaces", ns, tail @ ..] => (Some(ns), tail),
            tail => (None, tail),
        };
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body).unwrap()
        };
        self.rv += 1;
        let rv = self.rv.to_string();
        match (method.as_str(), tail) {
            ("GET", [plural]) => {
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|((n, p, _), _)| p == plural && ns.is_none_or(|ns| ns == n))
                    .map(|(_, o)| o.clone())
                    .collect();
                (
                    StatusCode::OK,
                    json!({"apiVersion": "podwarden.io/v1alpha1", "kind": "List",
                           "metadata": {"resourceVersion": rv}, "items": items}),
                )
            }
            ("GET", [plural, name]) => {
                match self.objects.get(&(
                    ns.unwrap_or_default().into(),
                    plural.to_string(),
                    name.to_string(),
                )) {
                    Some(o) => (StatusCode::OK, o.clone()),
                    None => fail(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        format!("{plural} {name:?} not found"),
                    ),
                }
            }
            ("POST", [plural]) => {
                let ns = ns.unwrap_or_default().to_string();
                let name = body["metadata"]["name"].as_str().unwrap().to_string();
                let key = (ns.clone(), plural.to_string(), name.clone());
                if self.objects.contains_key(&key) {
                    return fail(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        format!("{name} exists"),
                    );
                }
                let mut o = body;
                o["metadata"]["resourceVersion"] = json!(rv);
                o["metadata"]["namespace"] = json!(ns);
                self.objects.insert(key, o.clone());
                (StatusCode::CREATED, o)
            }
            ("PUT" | "PATCH", [plural, name]) => {
                let key = (
                    ns.unwrap_or_default().into(),
                    plural.to_string(),
                    name.to_string(),
                );
                let Some(cur) = self.objects.get(&key) else {
                    return fail(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        format!("{name} not found"),
                    );
                };
                let want = &body["metadata"]["resourceVersion"];
                if (method == Method::PUT || !want.is_null())
                    && *want != cur["metadata"]["resourceVersion"]
                {
                    return fail(
                        StatusCode::CONFLICT,
                        "Conflict",
                        "the object has been modified".into(),
                    );
                }
                let mut o = if method == Method::PUT {
                    body
                } else {
                    let mut o = cur.clone();
                    merge(&mut o, &body);
                    o
                };
                o["metadata"]["resourceVersion"] = json!(rv);
                self.objects.insert(key, o.clone());
                (StatusCode::OK, o)
            }
            _ => panic!("fake API: unexpected {method} {path}"),
        }
    }
}

pub fn mock_client() -> (kube::Client, Arc<Mutex<FakeApi>>) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let served = api.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            let (status, out) =
                served
                    .lock()
                    .unwrap()
                    .handle(&parts.method, parts.uri.path(), &bytes);
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

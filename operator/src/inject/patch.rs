//! The JSON Patch that injects a pod, and the AdmissionReview entry point.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use serde_json::{json, Value};

use super::containers::{init_container, sidecar_container, RUN_VOLUME, SIDECAR_NAME};
use super::decision::{plan, Injection, Plan, Skip};
use super::{keys, InjectConfig};
use crate::crd::owner::workload_from_pod_metadata;

/// Handles one admission request for a Pod. Never panics; anything we
/// cannot make sense of is denied with the reason (the webhook fails closed).
pub fn mutate(
    req: &AdmissionRequest<Pod>,
    namespace_labels: &BTreeMap<String, String>,
    cfg: &InjectConfig,
) -> AdmissionResponse {
    let resp = AdmissionResponse::from(req);
    if req.operation != Operation::Create {
        return resp;
    }
    let Some(pod) = req.object.as_ref() else {
        return resp.deny("podwarden: admission request carries no pod object");
    };
    // Pods created by controllers have no name yet and may not carry their
    // namespace in metadata; the request always says where they go.
    let namespace = req
        .namespace
        .clone()
        .or_else(|| pod.metadata.namespace.clone())
        .unwrap_or_default();
    let inj = match plan(&namespace, pod, namespace_labels, cfg) {
        Ok(Plan::Inject(i)) => i,
        Ok(Plan::Skip(why)) => return skipped(resp, &why),
        Err(msg) => return resp.deny(format!("podwarden: {msg}")),
    };
    let workload = workload_from_pod_metadata(&namespace, &pod.metadata).map(|w| w.to_string());
    let (ops, warnings) = pod_patch(pod, inj, workload.as_deref(), cfg);
    let patch: json_patch::Patch = match serde_json::from_value(Value::Array(ops)) {
        Ok(p) => p,
        Err(e) => return resp.deny(format!("podwarden: internal error building the patch: {e}")),
    };
    match resp.clone().with_patch(patch) {
        Ok(mut r) => {
            if !warnings.is_empty() {
                r.warnings = Some(warnings);
            }
            r
        }
        Err(e) => resp.deny(format!(
            "podwarden: internal error serialising the patch: {e}"
        )),
    }
}

fn skipped(mut resp: AdmissionResponse, why: &Skip) -> AdmissionResponse {
    // Audit annotations make "why wasn't my pod injected?" answerable from
    // the API server's audit log without operator logs.
    resp.audit_annotations
        .insert("skipped".into(), why.to_string());
    resp
}

/// JSON Patch operations (RFC 6902, as JSON values) injecting `pod`, plus
/// warnings for the person creating it.
///
/// Order of init containers: `podwarden-init` goes first, before the app's
/// own init containers, so that nothing in the pod ever runs before the
/// traffic rules exist (an app init container must not be a way around the
/// policy). With native sidecars the proxy starts right after it, so app
/// init containers' traffic is proxied and governed too. Without native
/// sidecars (istio's classic layout has the same limitation) app init
/// containers run with the rules in place but no proxy yet: their outbound
/// connections are refused unless they run as the proxy UID. We warn.
pub fn pod_patch(
    pod: &Pod,
    inj: Injection,
    workload: Option<&str>,
    cfg: &InjectConfig,
) -> (Vec<Value>, Vec<String>) {
    let mut ops = Vec::new();
    let mut warnings = Vec::new();
    let spec = pod.spec.clone().unwrap_or_default();
    let native = cfg.native_sidecar;
    let init = to_value(&init_container(cfg));
    let sidecar = to_value(&sidecar_container(cfg, inj, workload, native));

    let has_init = spec.init_containers.as_ref().is_some_and(|c| !c.is_empty());
    if spec.init_containers.is_none() {
        let list = if native {
            vec![init, sidecar.clone()]
        } else {
            vec![init]
        };
        ops.push(add("/spec/initContainers", Value::Array(list)));
    } else {
        ops.push(add("/spec/initContainers/0", init));
        if native {
            ops.push(add("/spec/initContainers/1", sidecar.clone()));
        }
    }
    if !native {
        // First container: the kubelet starts containers in order and runs
        // the postStart hook to completion before starting the next, so the
        // app waits for the proxy.
        ops.push(add("/spec/containers/0", sidecar));
        if has_init {
            warnings.push(
                "podwarden: native sidecars are off, so this pod's init containers run before the \
                 proxy and their outbound connections will be refused"
                    .to_string(),
            );
        }
    }

    // The app's processes are visible to the proxy only in a shared PID
    // namespace; without attribution the pod's own choice stands.
    if inj.process_attribution {
        if spec.share_process_namespace == Some(false) {
            warnings.push(
                "podwarden: shareProcessNamespace=false overridden to true: the proxy needs it to \
                 attribute connections to processes (podwarden.io/process-attribution: \"false\" \
                 keeps it off)"
                    .to_string(),
            );
        }
        ops.push(add("/spec/shareProcessNamespace", Value::Bool(true)));
    }

    let volume = json!({"name": RUN_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}});
    if spec.volumes.is_none() {
        ops.push(add("/spec/volumes", Value::Array(vec![volume])));
    } else {
        ops.push(add("/spec/volumes/-", volume));
    }

    let status = json!({
        "initContainers": [super::INIT_CONTAINER_NAME],
        "sidecar": SIDECAR_NAME,
        "native": native,
        "mode": inj.modes.mode.as_str(),
        "processAttribution": inj.process_attribution,
    })
    .to_string();
    let mut annotations = vec![(keys::STATUS, status)];
    let existing = pod.metadata.annotations.clone().unwrap_or_default();
    if !native && !existing.contains_key(keys::DEFAULT_CONTAINER) {
        if let Some(app) = spec.containers.first() {
            annotations.push((keys::DEFAULT_CONTAINER, app.name.clone()));
        }
    }
    if pod.metadata.annotations.is_none() {
        let map: serde_json::Map<String, Value> = annotations
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect();
        ops.push(add("/metadata/annotations", Value::Object(map)));
    } else {
        for (k, v) in annotations {
            ops.push(add(
                &format!("/metadata/annotations/{}", escape(k)),
                Value::String(v),
            ));
        }
    }
    let injected = (keys::INJECTED, "true");
    if pod.metadata.labels.is_none() {
        ops.push(add("/metadata/labels", json!({ injected.0: injected.1 })));
    } else {
        ops.push(add(
            &format!("/metadata/labels/{}", escape(injected.0)),
            json!(injected.1),
        ));
    }
    (ops, warnings)
}

fn add(path: &str, value: Value) -> Value {
    json!({"op": "add", "path": path, "value": value})
}

/// RFC 6901 escaping of one reference token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    // k8s-openapi types only hold strings, numbers, maps and lists: their
    // serialisation to a Value cannot fail.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

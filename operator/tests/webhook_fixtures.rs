//! Golden tests of the admission webhook on real AdmissionReview JSON.
//!
//! Each directory under `tests/fixtures/webhook/` holds `review.json` (what
//! the API server sends), `namespace.json` (the pod's namespace), optionally
//! `config.json` (operator config overrides), and the expectations:
//! `expected-response.json` and, when the pod is mutated, `expected-pod.json`
//! (the review's pod with the JSON Patch applied). `UPDATE_FIXTURES=1`
//! rewrites the expectations; review the diff before committing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use podwarden_operator::inject::{mutate, InjectConfig};
use serde_json::{json, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhook")
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

struct Outcome {
    response: Value,
    pod: Option<Value>,
}

fn run_case(dir: &Path) -> Outcome {
    let review_json = read_json(&dir.join("review.json"));
    let review: AdmissionReview<Pod> = serde_json::from_value(review_json.clone()).unwrap();
    let req: AdmissionRequest<Pod> = review.try_into().unwrap();
    let ns: Namespace = serde_json::from_value(read_json(&dir.join("namespace.json"))).unwrap();
    let labels: BTreeMap<String, String> = ns.metadata.labels.unwrap_or_default();
    let cfg: InjectConfig = match std::fs::read_to_string(dir.join("config.json")) {
        Ok(t) => serde_json::from_str(&t).unwrap(),
        Err(_) => InjectConfig::default(),
    };
    let resp = mutate(&req, &labels, &cfg);
    assert_eq!(resp.uid, req.uid, "the response must echo the request uid");
    let pod = resp.patch.as_ref().map(|bytes| {
        let patch: json_patch::Patch = serde_json::from_slice(bytes).unwrap();
        let mut pod = review_json["request"]["object"].clone();
        json_patch::patch(&mut pod, &patch)
            .unwrap_or_else(|e| panic!("{}: patch does not apply: {e}", dir.display()));
        pod
    });
    let response = json!({
        "allowed": resp.allowed,
        "patched": resp.patch.is_some(),
        "message": resp.result.message,
        "warnings": resp.warnings.clone().unwrap_or_default(),
        "auditAnnotations": resp.audit_annotations.iter().collect::<BTreeMap<_, _>>(),
    });
    // A mutated pod sent through the webhook again (reinvocation) is left alone.
    if let Some(p) = &pod {
        let mut again = review_json.clone();
        again["request"]["object"] = p.clone();
        let review: AdmissionReview<Pod> = serde_json::from_value(again).unwrap();
        let req2: AdmissionRequest<Pod> = review.try_into().unwrap();
        let resp2 = mutate(&req2, &labels, &cfg);
        assert!(
            resp2.allowed && resp2.patch.is_none(),
            "{}: not idempotent",
            dir.display()
        );
        // And it is still a Pod the typed API accepts.
        serde_json::from_value::<Pod>(p.clone()).unwrap();
    }
    Outcome { response, pod }
}

fn check_or_update(path: &Path, actual: &Value, failures: &mut Vec<String>) {
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(path, pretty).unwrap();
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(expected) => {
            let expected: Value = serde_json::from_str(&expected).unwrap();
            if &expected != actual {
                failures.push(format!(
                    "{} differs:\n--- expected\n{}\n--- actual\n{}",
                    path.display(),
                    serde_json::to_string_pretty(&expected).unwrap(),
                    pretty
                ));
            }
        }
        Err(_) => failures.push(format!(
            "{} is missing (run with UPDATE_FIXTURES=1)",
            path.display()
        )),
    }
}

#[test]
fn webhook_fixtures_match_expected_pods() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("review.json").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "fixture cases went missing: {dirs:?}");
    let mut failures = Vec::new();
    for dir in &dirs {
        let out = run_case(dir);
        check_or_update(
            &dir.join("expected-response.json"),
            &out.response,
            &mut failures,
        );
        let pod_file = dir.join("expected-pod.json");
        match &out.pod {
            Some(p) => check_or_update(&pod_file, p, &mut failures),
            None => {
                if pod_file.exists() {
                    failures.push(format!("{}: expected a patch, got none", dir.display()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Properties the goldens must have, asserted independently of them so a
/// careless `UPDATE_FIXTURES=1` cannot bless a wrong injection.
#[test]
fn injected_pods_have_the_security_properties() {
    for case in [
        "deployment-basic",
        "multi-container-init-modes",
        "statefulset-pod-label-opt-in",
    ] {
        let pod = run_case(&fixtures().join(case))
            .pod
            .unwrap_or_else(|| panic!("{case}: not injected"));
        let inits = pod["spec"]["initContainers"].as_array().unwrap();
        assert_eq!(
            inits[0]["name"], "podwarden-init",
            "{case}: iptables init must run first"
        );
        assert_eq!(
            inits[0]["securityContext"]["capabilities"]["add"],
            json!(["NET_ADMIN", "NET_RAW"])
        );
        assert_eq!(inits[0]["securityContext"]["runAsUser"], 0);
        assert_eq!(
            inits[0]["securityContext"]["allowPrivilegeEscalation"],
            false
        );
        // The init container's bounding set lacks the attribution caps: it
        // must run the binary without file capabilities (EPERM otherwise).
        assert_eq!(inits[0]["command"], json!(["podwarden-proxy"]));
        assert_eq!(
            inits[1]["name"], "podwarden-proxy",
            "{case}: native sidecar right after init"
        );
        assert_eq!(inits[1]["restartPolicy"], "Always");
        let sc = &inits[1]["securityContext"];
        assert_eq!(sc["runAsUser"], 1337);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        // Process attribution is on by default: exactly the two caps it
        // needs, and privilege escalation so the binary's file caps apply.
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(
            sc["capabilities"]["add"],
            json!(["SYS_PTRACE", "DAC_READ_SEARCH"])
        );
        assert_eq!(sc["allowPrivilegeEscalation"], true);
        assert_eq!(sc["privileged"], false);
        assert_eq!(inits[1]["command"], json!(["podwarden-proxy-procattr"]));
        assert_eq!(inits[1]["startupProbe"]["httpGet"]["path"], "/ready");
        assert_eq!(inits[1]["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(pod["spec"]["shareProcessNamespace"], true);
        // No podwarden container among the app containers in native mode.
        for c in pod["spec"]["containers"].as_array().unwrap() {
            assert!(
                !c["name"].as_str().unwrap().starts_with("podwarden"),
                "{case}"
            );
        }
    }
    let pod = run_case(&fixtures().join("multi-container-init-modes"))
        .pod
        .unwrap();
    let env = &pod["spec"]["initContainers"][1]["env"];
    let get = |n: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == n)
            .map(|e| e["value"].clone())
    };
    assert_eq!(get("PODWARDEN_MODE"), Some(json!("protect")));
    assert_eq!(get("PODWARDEN_WAF_MODE"), Some(json!("monitor")));
    assert_eq!(get("PODWARDEN_DLP_MODE"), Some(json!("learn")));
    assert_eq!(
        get("PODWARDEN_WORKLOAD"),
        Some(json!("shop/Deployment/cart"))
    );
    let names: Vec<_> = pod["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![
            json!("podwarden-init"),
            json!("podwarden-proxy"),
            json!("migrate"),
            json!("wait-for-redis")
        ]
    );

    let legacy = run_case(&fixtures().join("legacy-sidecar-with-init"));
    let pod = legacy.pod.unwrap();
    assert_eq!(pod["spec"]["containers"][0]["name"], "podwarden-proxy");
    assert!(pod["spec"]["containers"][0].get("restartPolicy").is_none());
    assert!(
        pod["spec"]["containers"][0]["lifecycle"]["postStart"]["exec"]["command"][1]
            == "wait-ready"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"],
        "invoices"
    );
    assert_eq!(legacy.response["warnings"].as_array().unwrap().len(), 1);
    assert_eq!(
        pod["spec"]["containers"][0]["command"],
        json!(["podwarden-proxy-procattr"])
    );
    // The hook runs beside the proxy with the same bounding set; the plain
    // binary keeps it independent of file capabilities.
    assert_eq!(
        pod["spec"]["containers"][0]["lifecycle"]["postStart"]["exec"]["command"][0],
        "podwarden-proxy"
    );
}

/// `podwarden.io/process-attribution: "false"`: the sidecar holds no
/// capability, cannot escalate, runs the binary without file capabilities,
/// and the pod's own `shareProcessNamespace: false` stands.
#[test]
fn process_attribution_off_drops_every_capability() {
    let out = run_case(&fixtures().join("process-attribution-off"));
    let pod = out.pod.expect("injected");
    let sidecar = &pod["spec"]["initContainers"][1];
    assert_eq!(sidecar["name"], "podwarden-proxy");
    assert_eq!(sidecar["command"], json!(["podwarden-proxy"]));
    let sc = &sidecar["securityContext"];
    assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}));
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(pod["spec"]["shareProcessNamespace"], false);
    assert_eq!(out.response["warnings"], json!([]));
    let status: Value = serde_json::from_str(
        pod["metadata"]["annotations"]["podwarden.io/status"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(status["processAttribution"], false);
    assert_eq!(status["mode"], "protect");
}

#[test]
fn skipped_and_denied_cases() {
    for case in [
        "already-injected",
        "host-network",
        "opted-out",
        "namespace-not-labelled",
        "operator-namespace",
    ] {
        let out = run_case(&fixtures().join(case));
        assert!(out.pod.is_none(), "{case} must not be mutated");
        assert_eq!(out.response["allowed"], true, "{case} must be admitted");
    }
    let out = run_case(&fixtures().join("bad-mode-denied"));
    assert_eq!(out.response["allowed"], false);
    let msg = out.response["message"].as_str().unwrap();
    assert!(
        msg.contains("podwarden.io/mode") && msg.contains("protcet"),
        "{msg}"
    );
}

/// Validates the expected pods against the Kubernetes OpenAPI schemas with
/// `kubernetes-validate` (PyPI), when it is installed.
#[test]
fn expected_pods_validate_against_kubernetes_schemas() {
    let ok = std::process::Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .map(|o| o.status.success());
    if !matches!(ok, Ok(true)) {
        println!("skipped: kubernetes-validate not installed (pip install kubernetes-validate; scripts/check-chart.sh does)");
        return;
    }
    // Pods of controllers are admitted before the API server names them
    // (generateName); give them the name it would, as kubernetes-validate
    // requires one.
    let dir =
        std::env::temp_dir().join(format!("podwarden-webhook-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for e in std::fs::read_dir(fixtures()).unwrap() {
        let case = e.unwrap().path();
        let p = case.join("expected-pod.json");
        if p.exists() {
            let mut pod = read_json(&p);
            if pod["metadata"].get("name").is_none() {
                let name = format!("{}x7k2p", pod["metadata"]["generateName"].as_str().unwrap());
                pod["metadata"]["name"] = json!(name);
            }
            let out = dir.join(format!(
                "{}.json",
                case.file_name().unwrap().to_string_lossy()
            ));
            std::fs::write(&out, serde_json::to_vec(&pod).unwrap()).unwrap();
            files.push(out);
        }
    }
    let out = std::process::Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", "1.34.0"])
        .args(&files)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "kubernetes-validate failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! Whether a pod is injected, and in which modes. Pure: the pod, its
//! namespace's labels and the config in; a plan, or a denial message, out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use podwarden_policy::Mode;

use super::containers::{INIT_CONTAINER_NAME, SIDECAR_NAME};
use super::{keys, InjectConfig};

/// Modes the sidecar starts in; the controller may change them later
/// without a restart (see `controller::distribute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadModes {
    pub mode: Mode,
    /// `None` = follow `mode`.
    pub waf: Option<Mode>,
    pub dlp: Option<Mode>,
}

/// Why a pod is admitted unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    NotCreate,
    OperatorNamespace,
    ExcludedNamespace(String),
    HostNetwork,
    AlreadyInjected,
    OptedOut,
    NotOptedIn,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NotCreate => write!(f, "only pod CREATE is mutated"),
            Skip::OperatorNamespace => write!(f, "the operator's own namespace is never injected"),
            Skip::ExcludedNamespace(ns) => write!(f, "namespace {ns} is excluded from injection"),
            Skip::HostNetwork => write!(
                f,
                "hostNetwork pod: its iptables rules would be the node's, so it is not injected"
            ),
            Skip::AlreadyInjected => write!(f, "already injected"),
            Skip::OptedOut => write!(f, "opted out by {}", keys::INJECT),
            Skip::NotOptedIn => write!(f, "neither the namespace nor the pod opted in"),
        }
    }
}

/// How a pod is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injection {
    pub modes: WorkloadModes,
    /// The sidecar attributes connections to processes (and gets the two
    /// capabilities that takes).
    pub process_attribution: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Inject(Injection),
    Skip(Skip),
}

/// Decides what to do with a pod being created in `namespace`.
///
/// Opt-in: namespace label `podwarden.io/inject=enabled`, or the pod's
/// annotation (or label) `podwarden.io/inject: "true"`. Opt-out: the pod's
/// `"false"`, or the namespace label `disabled`, which wins over the pod.
///
/// Returns `Err(message)` — the admission is denied — when the pod would be
/// injected but one of its podwarden annotations has a value we do not
/// understand. A typo such as `podwarden.io/mode: protcet` must not quietly
/// give a workload less protection than its owner asked for; failing at
/// deploy time with the reason is the safer outcome for a security control.
pub fn plan(
    namespace: &str,
    pod: &Pod,
    namespace_labels: &BTreeMap<String, String>,
    cfg: &InjectConfig,
) -> Result<Plan, String> {
    if namespace == cfg.operator_namespace {
        return Ok(Plan::Skip(Skip::OperatorNamespace));
    }
    if cfg.excluded_namespaces.iter().any(|n| n == namespace) {
        return Ok(Plan::Skip(Skip::ExcludedNamespace(namespace.to_string())));
    }
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return Ok(Plan::Skip(Skip::HostNetwork));
    }
    if is_injected(pod) {
        return Ok(Plan::Skip(Skip::AlreadyInjected));
    }

    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let pod_choice = match annotations
        .get(keys::INJECT)
        .or_else(|| labels.get(keys::INJECT))
    {
        None => None,
        Some(v) => Some(parse_bool(v).ok_or_else(|| {
            format!(
                "{}: invalid value {v:?}: expected \"true\" or \"false\"",
                keys::INJECT
            )
        })?),
    };
    let ns_choice = namespace_labels.get(keys::INJECT).map(String::as_str);
    let inject = match (ns_choice, pod_choice) {
        (Some("disabled"), _) => false,
        (_, Some(choice)) => choice,
        (Some("enabled"), None) => true,
        _ => false,
    };
    if !inject {
        let why = if pod_choice == Some(false) || ns_choice == Some("disabled") {
            Skip::OptedOut
        } else {
            Skip::NotOptedIn
        };
        return Ok(Plan::Skip(why));
    }

    let mode = match annotations.get(keys::MODE) {
        Some(v) => parse_mode(keys::MODE, v)?,
        None => match namespace_labels.get(keys::MODE) {
            Some(v) => parse_mode(&format!("namespace label {}", keys::MODE), v)?,
            None => cfg.default_mode,
        },
    };
    let feature = |key: &str| annotations.get(key).map(|v| parse_mode(key, v)).transpose();
    let process_attribution = match annotations.get(keys::PROCESS_ATTRIBUTION) {
        None => cfg.process_attribution,
        Some(v) => match v.trim() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(format!(
                    "{}: invalid value {v:?}: expected \"true\" or \"false\"",
                    keys::PROCESS_ATTRIBUTION
                ))
            }
        },
    };
    Ok(Plan::Inject(Injection {
        modes: WorkloadModes {
            mode,
            waf: feature(keys::WAF_MODE)?,
            dlp: feature(keys::DLP_MODE)?,
        },
        process_attribution,
    }))
}

/// A pod carrying our status annotation or one of our containers has been
/// through the webhook already (reinvocation, or a pod spec copied from a
/// running pod).
pub fn is_injected(pod: &Pod) -> bool {
    if pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(keys::STATUS))
    {
        return true;
    }
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let ours = |n: &str| n == SIDECAR_NAME || n == INIT_CONTAINER_NAME;
    spec.containers.iter().any(|c| ours(&c.name))
        || spec.init_containers.iter().flatten().any(|c| ours(&c.name))
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "true" | "enabled" => Some(true),
        "false" | "disabled" => Some(false),
        _ => None,
    }
}

fn parse_mode(key: &str, v: &str) -> Result<Mode, String> {
    match v.trim() {
        "learn" => Ok(Mode::Learn),
        "monitor" => Ok(Mode::Monitor),
        "protect" => Ok(Mode::Protect),
        _ => Err(format!(
            "{key}: invalid value {v:?}: expected one of learn, monitor, protect"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotations: &[(&str, &str)]) -> Pod {
        let mut p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}
        }))
        .unwrap();
        p.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        p
    }

    fn ns(labels: &[(&str, &str)]) -> BTreeMap<String, String> {
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn opt_in_and_out_matrix() {
        let cfg = InjectConfig::default();
        let on = ns(&[(keys::INJECT, "enabled")]);
        let off = ns(&[(keys::INJECT, "disabled")]);
        let none = ns(&[]);
        let injects = |p: &Pod, n: &BTreeMap<String, String>| {
            matches!(plan("shop", p, n, &cfg).unwrap(), Plan::Inject(_))
        };
        assert!(injects(&pod(&[]), &on));
        assert!(!injects(&pod(&[(keys::INJECT, "false")]), &on));
        assert!(injects(&pod(&[(keys::INJECT, "true")]), &none));
        assert!(!injects(&pod(&[]), &none));
        assert!(!injects(&pod(&[(keys::INJECT, "true")]), &off));
        assert_eq!(
            plan("shop", &pod(&[(keys::INJECT, "false")]), &on, &cfg).unwrap(),
            Plan::Skip(Skip::OptedOut)
        );
    }

    #[test]
    fn modes_from_annotations_then_namespace_then_default() {
        let cfg = InjectConfig::default();
        let on = ns(&[(keys::INJECT, "enabled"), (keys::MODE, "monitor")]);
        let p = pod(&[(keys::WAF_MODE, "protect")]);
        assert_eq!(
            modes(plan("shop", &p, &on, &cfg).unwrap()),
            WorkloadModes {
                mode: Mode::Monitor,
                waf: Some(Mode::Protect),
                dlp: None
            }
        );
        let p = pod(&[(keys::MODE, "protect"), (keys::DLP_MODE, "learn")]);
        assert_eq!(
            modes(plan("shop", &p, &on, &cfg).unwrap()),
            WorkloadModes {
                mode: Mode::Protect,
                waf: None,
                dlp: Some(Mode::Learn)
            }
        );
        let on = ns(&[(keys::INJECT, "enabled")]);
        assert_eq!(
            modes(plan("shop", &pod(&[]), &on, &cfg).unwrap()),
            WorkloadModes {
                mode: Mode::Learn,
                waf: None,
                dlp: None
            }
        );
    }

    fn modes(p: Plan) -> WorkloadModes {
        match p {
            Plan::Inject(i) => i.modes,
            Plan::Skip(s) => panic!("skipped: {s}"),
        }
    }

    #[test]
    fn process_attribution_from_annotation_then_config() {
        let on = ns(&[(keys::INJECT, "enabled")]);
        let attribution = |p: &Pod, cfg: &InjectConfig| match plan("shop", p, &on, cfg).unwrap() {
            Plan::Inject(i) => i.process_attribution,
            Plan::Skip(s) => panic!("skipped: {s}"),
        };
        let off_by_default = InjectConfig {
            process_attribution: false,
            ..InjectConfig::default()
        };
        let cfg = InjectConfig::default();
        assert!(attribution(&pod(&[]), &cfg), "on by default");
        assert!(!attribution(&pod(&[]), &off_by_default));
        let no = pod(&[(keys::PROCESS_ATTRIBUTION, "false")]);
        assert!(!attribution(&no, &cfg), "the pod turns it off");
        let yes = pod(&[(keys::PROCESS_ATTRIBUTION, " true")]);
        assert!(attribution(&yes, &off_by_default), "the pod turns it on");
        let e = plan(
            "shop",
            &pod(&[(keys::PROCESS_ATTRIBUTION, "off")]),
            &on,
            &cfg,
        )
        .unwrap_err();
        assert!(
            e.contains("podwarden.io/process-attribution") && e.contains("\"off\""),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_denied_with_the_key_and_value() {
        let cfg = InjectConfig::default();
        let on = ns(&[(keys::INJECT, "enabled")]);
        let e = plan("shop", &pod(&[(keys::MODE, "protcet")]), &on, &cfg).unwrap_err();
        assert!(
            e.contains("podwarden.io/mode") && e.contains("protcet"),
            "{e}"
        );
        let e = plan("shop", &pod(&[(keys::INJECT, "yes")]), &on, &cfg).unwrap_err();
        assert!(e.contains("podwarden.io/inject"), "{e}");
        // An opted-out pod's other annotations are not our business.
        let p = pod(&[(keys::INJECT, "false"), (keys::MODE, "bogus")]);
        assert_eq!(
            plan("shop", &p, &on, &cfg).unwrap(),
            Plan::Skip(Skip::OptedOut)
        );
    }

    #[test]
    fn operator_and_system_namespaces_are_skipped() {
        let cfg = InjectConfig::default();
        let on = ns(&[(keys::INJECT, "enabled")]);
        assert_eq!(
            plan("podwarden-system", &pod(&[]), &on, &cfg).unwrap(),
            Plan::Skip(Skip::OperatorNamespace)
        );
        assert_eq!(
            plan("kube-system", &pod(&[]), &on, &cfg).unwrap(),
            Plan::Skip(Skip::ExcludedNamespace("kube-system".into()))
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(keys::INJECT.to_string()),
            Just(keys::MODE.to_string()),
            Just(keys::WAF_MODE.to_string()),
            Just(keys::DLP_MODE.to_string()),
            Just(keys::PROCESS_ATTRIBUTION.to_string()),
            "[a-z./-]{1,20}",
        ]
    }

    proptest! {
        /// Whatever the annotations and namespace labels, the decision is a
        /// plan or a denial that names one of our keys — never a panic.
        #[test]
        fn any_annotations_give_a_plan_or_a_named_denial(
            ann in proptest::collection::btree_map(key(), "\\PC{0,12}", 0..6),
            ns in proptest::collection::btree_map(key(), "\\PC{0,12}", 0..3),
            host_network in any::<bool>(),
        ) {
            let mut pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "app", "image": "app:1"}], "hostNetwork": host_network}
            })).unwrap();
            pod.metadata.annotations = Some(ann);
            match plan("shop", &pod, &ns, &InjectConfig::default()) {
                Ok(Plan::Inject(_)) => prop_assert!(!host_network),
                Ok(Plan::Skip(_)) => {}
                Err(msg) => prop_assert!(msg.contains("podwarden.io/"), "{}", msg),
            }
        }
    }
}

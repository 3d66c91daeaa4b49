//! The two containers podwarden adds to a pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, HTTPGetAction,
    Lifecycle, LifecycleHandler, ObjectFieldSelector, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{InjectConfig, Injection};

pub const INIT_CONTAINER_NAME: &str = "podwarden-init";
pub const SIDECAR_NAME: &str = "podwarden-proxy";
/// The proxy binary without file capabilities: the init container, the
/// postStart hook and the sidecar without process attribution run it.
pub const PROXY_BIN: &str = "podwarden-proxy";
/// The same binary carrying `cap_sys_ptrace,cap_dac_read_search+ep` (the
/// image's scripts/image-rootfs.sh sets them). A separate file because a
/// binary with effective file capabilities cannot be executed at all where
/// the bounding set lacks them (EPERM), as in the init container.
pub const PROXY_BIN_PROCATTR: &str = "podwarden-proxy-procattr";
pub const RUN_VOLUME: &str = "podwarden-run";
pub const RUN_DIR: &str = "/var/run/podwarden";
const ADMIN_PORT_NAME: &str = "pw-admin";

/// `podwarden-proxy init`: writes the pod's iptables rules and exits. The
/// only podwarden container with privileges, and only NET_ADMIN/NET_RAW.
pub fn init_container(cfg: &InjectConfig) -> Container {
    let mut args = vec![
        "init".to_string(),
        format!("--proxy-uid={}", cfg.proxy_uid),
        format!("--outbound-port={}", cfg.outbound_port),
        format!("--inbound-port={}", cfg.inbound_port),
        format!("--dns-port={}", cfg.dns_port),
        format!("--admin-port={}", cfg.admin_port),
        "--resolv-conf=/etc/resolv.conf".to_string(),
    ];
    if !cfg.exclude_inbound_ports.is_empty() {
        args.push(format!(
            "--exclude-inbound-ports={}",
            cfg.exclude_inbound_ports.join(",")
        ));
    }
    if !cfg.exclude_outbound_cidrs.is_empty() {
        args.push(format!(
            "--exclude-outbound-cidrs={}",
            cfg.exclude_outbound_cidrs.join(",")
        ));
    }
    Container {
        name: INIT_CONTAINER_NAME.into(),
        image: Some(cfg.proxy_image.clone()),
        image_pull_policy: Some(cfg.image_pull_policy.clone()),
        command: Some(vec![PROXY_BIN.into()]),
        args: Some(args),
        resources: Some(resources(&cfg.resources.cpu_request, "32Mi", None, "64Mi")),
        security_context: Some(SecurityContext {
            // iptables needs root in the pod's user namespace plus these two caps.
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `podwarden-proxy run`: the sidecar. `native` makes it a Kubernetes native
/// sidecar (an init container that keeps running); otherwise it is a regular
/// container whose postStart hook holds the app until the proxy is ready.
pub fn sidecar_container(
    cfg: &InjectConfig,
    inj: Injection,
    workload: Option<&str>,
    native: bool,
) -> Container {
    let modes = inj.modes;
    let field = |path: &str| EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.into(),
            api_version: None,
        }),
        ..Default::default()
    };
    let mut env = vec![
        EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(field("metadata.name")),
            value: None,
        },
        EnvVar {
            name: "POD_NAMESPACE".into(),
            value_from: Some(field("metadata.namespace")),
            value: None,
        },
        EnvVar {
            name: "POD_IP".into(),
            value_from: Some(field("status.podIP")),
            value: None,
        },
        EnvVar {
            name: "SERVICE_ACCOUNT".into(),
            value_from: Some(field("spec.serviceAccountName")),
            value: None,
        },
        value_env("PODWARDEN_MODE", modes.mode.as_str()),
        // Learning snapshots, the DNS name table and the last pushed policy
        // must survive a proxy restart; the root filesystem is read-only, so
        // they live on the pod's podwarden-run emptyDir.
        value_env("PODWARDEN_STATE_DIR", RUN_DIR),
    ];
    if let Some(m) = modes.waf {
        env.push(value_env("PODWARDEN_WAF_MODE", m.as_str()));
    }
    if let Some(m) = modes.dlp {
        env.push(value_env("PODWARDEN_DLP_MODE", m.as_str()));
    }
    if let Some(h) = &cfg.admin_token_sha256 {
        env.push(value_env("PODWARDEN_ADMIN_TOKEN_SHA256", h));
    }
    if let Some(w) = workload {
        env.push(value_env("PODWARDEN_WORKLOAD", w));
    }
    let http_probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(ADMIN_PORT_NAME.into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(1),
        ..Default::default()
    };
    let r = &cfg.resources;
    Container {
        name: SIDECAR_NAME.into(),
        image: Some(cfg.proxy_image.clone()),
        image_pull_policy: Some(cfg.image_pull_policy.clone()),
        command: Some(vec![if inj.process_attribution {
            PROXY_BIN_PROCATTR.into()
        } else {
            PROXY_BIN.into()
        }]),
        args: Some(vec![
            "run".into(),
            format!("--admin-port={}", cfg.admin_port),
            format!("--outbound-port={}", cfg.outbound_port),
            format!("--inbound-port={}", cfg.inbound_port),
            format!("--dns-port={}", cfg.dns_port),
        ]),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some(ADMIN_PORT_NAME.into()),
            container_port: i32::from(cfg.admin_port),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        resources: Some(resources(
            &r.cpu_request,
            &r.memory_request,
            r.cpu_limit.as_deref(),
            &r.memory_limit,
        )),
        // Startup gates the rest of the pod (native sidecars block the next
        // container until started); readiness takes the pod out of Services
        // while the proxy cannot relay; liveness restarts a wedged proxy.
        startup_probe: Some(http_probe("/ready", 1, 120)),
        readiness_probe: Some(http_probe("/ready", 5, 3)),
        liveness_probe: Some(http_probe("/healthz", 10, 3)),
        restart_policy: native.then(|| "Always".to_string()),
        lifecycle: (!native).then(|| Lifecycle {
            post_start: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec![
                        PROXY_BIN.into(),
                        "wait-ready".into(),
                        format!("--admin-port={}", cfg.admin_port),
                        format!("--timeout-seconds={}", cfg.hold_timeout_seconds),
                    ]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        security_context: Some(sidecar_security(cfg, inj.process_attribution)),
        volume_mounts: Some(vec![VolumeMount {
            name: RUN_VOLUME.into(),
            mount_path: RUN_DIR.into(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// The sidecar's security context. Without process attribution it holds no
/// capability at all.
///
/// With it, the proxy (a non-root UID) must read other UIDs' entries in the
/// shared PID namespace's /proc: `/proc/<pid>/fd/*` to map a connection's
/// socket inode to its process and `/proc/<pid>/exe` for the executable.
/// The kernel guards those links with a ptrace access check (passed with
/// CAP_SYS_PTRACE) inside 0500 directories owned by the app's UID (listed
/// with CAP_DAC_READ_SEARCH). Nothing more: not CAP_DAC_OVERRIDE (read and
/// search only, never write), not CAP_NET_ADMIN (the init container writes
/// the rules), not CAP_KILL. CAP_SYS_PTRACE would also allow attaching to
/// the app's processes; the proxy never calls ptrace(2), and a pod that
/// cannot accept that runs with `podwarden.io/process-attribution: "false"`.
///
/// A non-root process only gets capabilities through the binary's file
/// capabilities (`PROXY_BIN_PROCATTR`); `allowPrivilegeEscalation: false`
/// sets no_new_privs, under which the kernel ignores file capabilities, so
/// it must be true here. Adding the two to the container's capabilities puts
/// them in the bounding set, without which the capable binary cannot run.
pub fn sidecar_security(cfg: &InjectConfig, process_attribution: bool) -> SecurityContext {
    let add = process_attribution.then(|| vec!["SYS_PTRACE".into(), "DAC_READ_SEARCH".into()]);
    SecurityContext {
        run_as_user: Some(cfg.proxy_uid),
        run_as_group: Some(cfg.proxy_uid),
        run_as_non_root: Some(true),
        allow_privilege_escalation: Some(process_attribution),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            add,
            drop: Some(vec!["ALL".into()]),
        }),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

fn resources(
    cpu_req: &str,
    mem_req: &str,
    cpu_lim: Option<&str>,
    mem_lim: &str,
) -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_string());
    let mut limits = BTreeMap::from([("memory".to_string(), q(mem_lim))]);
    if let Some(c) = cpu_lim {
        limits.insert("cpu".into(), q(c));
    }
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), q(cpu_req)),
            ("memory".to_string(), q(mem_req)),
        ])),
        limits: Some(limits),
        ..Default::default()
    }
}

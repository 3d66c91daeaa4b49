use std::net::SocketAddr;

use podwarden_policy::{Action, Direction};
use prometheus::Registry;

use super::*;
use crate::events::{EventMetrics, Origin, RotatingFileConfig, SinkConfig};

fn policy(mode: &str, version: u64, port: u16) -> String {
    format!(
        "apiVersion: podwarden.io/v1alpha1
kind: WorkloadPolicy
metadata: {{ workload: shop/checkout, version: {version} }}
spec:
  mode: {mode}
  rules:
    - id: out-db
      direction: outbound
      peer: {{ cidr: 198.51.100.0/24 }}
      ports: [\"{port}\"]
"
    )
}

fn flow(port: u16) -> Flow {
    let peer: SocketAddr = format!("198.51.100.7:{port}").parse().unwrap();
    Flow::connection(Direction::Outbound, peer, "10.0.0.2:40000".parse().unwrap())
}

struct Fixture {
    dir: PathBuf,
    file: PathBuf,
    events: PathBuf,
    hook: DecisionHook,
    metrics: ReloadMetrics,
}

fn fixture(name: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("podwarden-reload-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Fixture {
        file: dir.join("policy.yaml"),
        events: dir.join("events.log"),
        dir,
        hook: DecisionHook::default(),
        metrics: ReloadMetrics::new(&Registry::new()).unwrap(),
    }
}

fn read_events(path: &Path) -> Vec<SecurityEvent> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn applies_keeps_last_good_on_error_and_reports() {
    let fx = fixture("apply");
    let em = EventMetrics::new(&Registry::new()).unwrap();
    let sink = SinkConfig::File(RotatingFileConfig {
        path: fx.events.clone(),
        max_bytes: 1 << 20,
        keep: 1,
    });
    let (bus, tasks) = EventBus::start(vec![sink], 100, Origin::default(), em);
    let r = PolicyReloader::new(
        fx.file.clone(),
        fx.hook.clone(),
        fx.metrics.clone(),
        Some(bus.clone()),
        "shop/checkout",
        "p-1",
    );

    // Missing file: rejected, the allow-all learn hook stays.
    assert!(matches!(r.reload_now(), ReloadOutcome::Rejected { .. }));
    assert_eq!(fx.hook.decide(&flow(9999)).mode, Mode::Learn);

    std::fs::write(&fx.file, policy("monitor", 1, 5432)).unwrap();
    assert_eq!(
        r.reload_now(),
        ReloadOutcome::Applied {
            version: 1,
            rules: 1,
            mode: Mode::Monitor
        }
    );
    assert!(fx.hook.decide(&flow(9999)).would_deny);
    assert_eq!(r.reload_now(), ReloadOutcome::Unchanged);

    std::fs::write(&fx.file, policy("protect", 2, 5432)).unwrap();
    assert!(matches!(
        r.reload_now(),
        ReloadOutcome::Applied { version: 2, .. }
    ));
    assert_eq!(fx.hook.decide(&flow(9999)).action, Action::Deny);
    assert_eq!(fx.hook.decide(&flow(5432)).rule.as_deref(), Some("out-db"));

    // Broken: a bad port on line 10. The version 2 policy keeps enforcing.
    std::fs::write(
        &fx.file,
        policy("protect", 3, 5432).replace("\"5432\"", "\"70000\""),
    )
    .unwrap();
    let ReloadOutcome::Rejected { error } = r.reload_now() else {
        panic!("not rejected")
    };
    let name = fx.file.display().to_string();
    assert!(error.starts_with(&format!("{name}:10:")), "{error}");
    assert!(error.contains("spec.rules[0].ports[0]"), "{error}");
    assert_eq!(fx.hook.decide(&flow(9999)).action, Action::Deny);
    assert_eq!(fx.hook.decide(&flow(5432)).rule.as_deref(), Some("out-db"));
    assert_eq!(r.current().unwrap().version(), 2);
    // The same broken content is not reported again until it changes.
    assert_eq!(r.reload_now(), ReloadOutcome::Unchanged);

    assert_eq!(fx.metrics.reloads.with_label_values(&["ok"]).get(), 2);
    assert_eq!(fx.metrics.reloads.with_label_values(&["error"]).get(), 2);
    assert_eq!(fx.metrics.last_success.get(), 0);
    assert_eq!(fx.metrics.version.get(), 2);
    assert_eq!(fx.metrics.rules.get(), 1);

    drop(r);
    drop(bus);
    for t in tasks {
        t.await.unwrap();
    }
    let events = read_events(&fx.events);
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        kinds,
        vec![
            "policy_reload",
            "policy_reload",
            "policy_reload",
            "mode_change",
            "mode_change",
            "mode_change",
            "policy_reload"
        ]
    );
    // waf and dlp follow spec.mode, so all three features changed.
    assert_eq!(
        events[3].kind,
        EventKind::ModeChange {
            feature: "network".into(),
            from: Mode::Monitor,
            to: Mode::Protect
        }
    );
    match &events[6].kind {
        EventKind::PolicyReload {
            result: ReloadResult::Error,
            version: 2,
            error: Some(e),
        } => {
            assert!(e.contains(":10:"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(events[6].workload, "shop/checkout");
    let _ = std::fs::remove_dir_all(&fx.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_the_file_and_sighup() {
    let fx = fixture("watch");
    std::fs::write(&fx.file, policy("protect", 1, 5432)).unwrap();
    let r = Arc::new(PolicyReloader::new(
        fx.file.clone(),
        fx.hook.clone(),
        fx.metrics.clone(),
        None,
        "a/b",
        "p",
    ));
    let task = r.clone().spawn(Duration::from_millis(20)).unwrap();
    // Polls; the deadline only bounds a hung test (a loaded CI machine can
    // stall the process for seconds).
    let wait_for = |want: u64| {
        let r = r.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while tokio::time::Instant::now() < deadline {
                if r.current().is_some_and(|p| p.version() == want) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
    };
    assert!(wait_for(1).await, "initial load");
    // A content change is picked up by polling (atomic rename, as kubelet does).
    let tmp = fx.dir.join("policy.yaml.tmp");
    std::fs::write(&tmp, policy("protect", 2, 6379)).unwrap();
    std::fs::rename(&tmp, &fx.file).unwrap();
    assert!(wait_for(2).await, "change picked up");
    assert_eq!(fx.hook.decide(&flow(6379)).rule.as_deref(), Some("out-db"));
    assert_eq!(fx.hook.decide(&flow(5432)).action, Action::Deny);

    // SIGHUP forces a re-validation even of unchanged content. The counter
    // is bumped after the policy is published: wait for version 2's count,
    // or it could pass for the SIGHUP's.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while fx.metrics.reloads.with_label_values(&["ok"]).get() < 2
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = fx.metrics.reloads.with_label_values(&["ok"]).get();
    assert_eq!(before, 2, "the initial load and the change");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut reloaded = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        if fx.metrics.reloads.with_label_values(&["ok"]).get() > before {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(reloaded, "SIGHUP reload");
    task.abort();
    let _ = std::fs::remove_dir_all(&fx.dir);
}

fn l7_policy(version: u64, l7: &str) -> String {
    format!(
        "apiVersion: podwarden.io/v1alpha1
kind: WorkloadPolicy
metadata: {{ workload: shop/checkout, version: {version} }}
spec:
  mode: learn
{l7}"
    )
}

/// A CRS-shaped directory with one rule, enough for the WAF to load.
fn tiny_crs(dir: &Path) -> PathBuf {
    let crs = dir.join("crs");
    std::fs::create_dir_all(crs.join("rules")).unwrap();
    std::fs::write(crs.join("crs-setup.conf.example"), "").unwrap();
    std::fs::write(
        crs.join("rules/REQUEST-900.conf"),
        "SecRule ARGS \"@rx evil\" \"id:942100,phase:2,deny,log\"\n",
    )
    .unwrap();
    crs
}

#[test]
fn waf_and_dlp_inspectors_follow_the_policy_and_bad_ones_are_rejected() {
    use crate::inspect::Inspectors;
    use crate::l7::{L7Builder, L7Metrics, L7Options, Reporter};

    let fx = fixture("l7");
    let crs = tiny_crs(&fx.dir);
    let inspectors = Inspectors::default();
    let r = PolicyReloader::new(
        fx.file.clone(),
        fx.hook.clone(),
        fx.metrics.clone(),
        None,
        "shop/checkout",
        "p-1",
    );
    let reporter = Reporter::with_sink(|_| {}, L7Metrics::new(&Registry::new()).unwrap());
    r.set_l7(
        L7Builder::new(
            L7Options {
                waf_rules_dir: crs.clone(),
            },
            reporter,
        ),
        inspectors.clone(),
    );
    let counts = || {
        let s = inspectors.load();
        (s.http.len(), s.stream.len())
    };

    std::fs::write(
        &fx.file,
        l7_policy(1, "  features: { waf: protect }\n  dlp: {}\n"),
    )
    .unwrap();
    let o = r.reload_now();
    assert!(
        matches!(o, ReloadOutcome::Applied { version: 1, .. }),
        "{o:?}"
    );
    assert_eq!(counts(), (2, 1), "WAF + DLP (http), DLP (stream)");

    // A WAF setting the engine cannot load: the whole policy is refused and
    // version 1 with its inspectors stays.
    std::fs::write(
        &fx.file,
        l7_policy(
            2,
            "  features: { waf: protect }\n  waf: { extraSeclang: 'SecBogus On' }\n",
        ),
    )
    .unwrap();
    let ReloadOutcome::Rejected { error } = r.reload_now() else {
        panic!("not rejected")
    };
    assert!(error.contains("spec.waf"), "{error}");
    assert_eq!(r.current().unwrap().version(), 1);
    assert_eq!(counts(), (2, 1));

    // A DLP sensor that does not exist: refused too.
    std::fs::write(
        &fx.file,
        l7_policy(3, "  dlp: { disabledSensors: [nope] }\n"),
    )
    .unwrap();
    let ReloadOutcome::Rejected { error } = r.reload_now() else {
        panic!("not rejected")
    };
    assert!(
        error.contains("spec.dlp") && error.contains("nope"),
        "{error}"
    );
    assert_eq!(counts(), (2, 1));

    // No L7 sections: no inspectors (the opaque relay splices again).
    std::fs::write(&fx.file, l7_policy(4, "")).unwrap();
    assert!(matches!(
        r.reload_now(),
        ReloadOutcome::Applied { version: 4, .. }
    ));
    assert_eq!(counts(), (0, 0));

    // WAF in protect without a CRS where --waf-rules-dir points: refused.
    std::fs::remove_dir_all(&crs).unwrap();
    std::fs::write(&fx.file, l7_policy(5, "  features: { waf: monitor }\n")).unwrap();
    let ReloadOutcome::Rejected { error } = r.reload_now() else {
        panic!("not rejected")
    };
    assert!(error.contains("--waf-rules-dir"), "{error}");
    assert_eq!(r.current().unwrap().version(), 4);
    let _ = std::fs::remove_dir_all(&fx.dir);
}

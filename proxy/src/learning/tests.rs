use std::sync::Arc;

use podwarden_policy::events::{EventAction, EventKind};
use podwarden_policy::{
    AppProtocol, Decision, Direction, Flow, FlowRecord, Mode, ProcessInfo, RecordKind,
};

use super::*;

fn rec(id: &str, peer: &str, exe: Option<&str>, decision: Decision) -> FlowRecord {
    let mut flow = Flow::connection(
        Direction::Outbound,
        peer.parse().unwrap(),
        "10.0.0.2:40000".parse().unwrap(),
    );
    flow.protocol = AppProtocol::Tls;
    flow.sni = Some("api.example".into());
    flow.peer_names = vec!["api.example".into()];
    flow.process = exe.map(|e| ProcessInfo {
        pid: 42,
        exe: e.into(),
        cmdline: vec![e.into()],
        uid: 1000,
    });
    FlowRecord {
        id: id.into(),
        start_ms: 1_700_000_000_000,
        duration_ms: 5,
        flow,
        bytes_sent: 1,
        bytes_received: 2,
        decision,
        kind: RecordKind::Connection,
        status: None,
    }
}

#[test]
fn workload_keys() {
    assert_eq!(
        learner_workload("shop/deployment/checkout"),
        "shop/checkout"
    );
    assert_eq!(learner_workload("shop/checkout"), "shop/checkout");
    assert_eq!(learner_workload("checkout"), "default/checkout");
    assert_eq!(learner_workload(""), "default/unknown");
    assert_eq!(learner_workload("Shop/My_App"), "shop/my-app");
    // every key is one the learner's store accepts
    for w in ["", "a", "A/B/C", "x//y", "../etc", ".hidden/.x"] {
        let k = learner_workload(w);
        podwarden_learner::store::split_workload(&k)
            .unwrap_or_else(|e| panic!("{w:?} -> {k:?}: {e}"));
    }
}

#[test]
fn learning_and_known_executables_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let l = Learning::open(dir.path(), "shop/deployment/checkout", "pod-1").unwrap();
    let allow = Decision::new(Mode::Learn, None);
    assert_eq!(
        l.observe(&rec(
            "a",
            "192.0.2.10:443",
            Some("/usr/bin/app"),
            allow.clone()
        )),
        Some("/usr/bin/app".to_string()),
        "first sighting is new"
    );
    assert_eq!(
        l.observe(&rec(
            "b",
            "192.0.2.11:443",
            Some("/usr/bin/app"),
            allow.clone()
        )),
        None
    );
    l.flush();
    let before = l.baseline().unwrap();
    assert_eq!(before.spec.rules.len(), 1, "{before:#?}");
    assert_eq!(before.spec.processes.len(), 1);
    drop(l);

    let l = Learning::open(dir.path(), "shop/deployment/checkout", "pod-1").unwrap();
    assert_eq!(l.baseline().unwrap(), before, "state restored");
    assert_eq!(
        l.observe(&rec(
            "c",
            "192.0.2.12:443",
            Some("/usr/bin/app"),
            allow.clone()
        )),
        None,
        "known from the restored baseline"
    );
    assert_eq!(
        l.observe(&rec("d", "192.0.2.12:443", Some("/tmp/curl"), allow)),
        Some("/tmp/curl".to_string())
    );
    let ev = l.baseline().unwrap().spec.rules[0]
        .evidence
        .clone()
        .unwrap();
    assert_eq!(ev.count, 4);
}

#[test]
fn consumer_counts_violations_and_reports_new_executables() {
    let dir = tempfile::tempdir().unwrap();
    let c = RecordConsumer {
        learning: Some(Arc::new(
            Learning::open(dir.path(), "shop/checkout", "pod-1").unwrap(),
        )),
        events: None,
        violations: Arc::new(ViolationWindow::new()),
        workload: "shop/checkout".into(),
        pod: "pod-1".into(),
    };
    let now = 1_700_000_000_000 + 1000;
    // allowed by a rule: nothing to report the second time
    let ok = Decision::new(Mode::Protect, Some("out-api".into()));
    let evs = c.handle(&rec(
        "1",
        "192.0.2.10:443",
        Some("/usr/bin/app"),
        ok.clone(),
    ));
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].kind, EventKind::NewProcess);
    assert_eq!(evs[0].process.as_deref(), Some("/usr/bin/app"));
    assert_eq!(evs[0].action, EventAction::Allowed);
    assert!(c
        .handle(&rec("2", "192.0.2.10:443", Some("/usr/bin/app"), ok))
        .is_empty());
    assert_eq!(c.violations.last_hour(now), 0);
    // denied, by a new executable: a violation and a new-process event
    let deny = Decision::new(Mode::Protect, None);
    let evs = c.handle(&rec("3", "192.0.2.10:443", Some("/tmp/x/curl"), deny));
    let kinds: Vec<_> = evs.iter().map(|e| e.kind.name()).collect();
    assert_eq!(kinds, ["violation", "new_process"]);
    assert_eq!(evs[1].action, EventAction::Blocked);
    assert_eq!(evs[1].id, "3-new-process");
    // unattributed flows are learned but raise no process event
    let evs = c.handle(&rec(
        "4",
        "192.0.2.10:443",
        None,
        Decision::new(Mode::Monitor, None),
    ));
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].kind, EventKind::WouldBlock);
    assert_eq!(c.violations.last_hour(now), 2);
}

/// Records are drained in batches; every one of a burst, and of a later
/// burst, is handled, and closing the channel ends the task.
#[tokio::test(start_paused = true)]
async fn spawned_consumer_handles_every_record_of_each_burst() {
    let violations = Arc::new(ViolationWindow::new());
    let c = RecordConsumer {
        learning: None,
        events: None,
        violations: violations.clone(),
        workload: "shop/checkout".into(),
        pod: "pod-1".into(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let task = c.spawn(rx, Duration::from_secs(5));
    let deny = Decision::new(Mode::Protect, None);
    let allow = Decision::new(Mode::Protect, Some("r".into()));
    let send = |i: usize, d: &Decision| {
        tx.try_send(Arc::new(rec(
            &i.to_string(),
            "192.0.2.10:443",
            None,
            d.clone(),
        )))
        .unwrap()
    };
    for i in 0..7 {
        send(i, &deny);
        send(100 + i, &allow);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let now = 1_700_000_000_000 + 1000;
    assert_eq!(violations.last_hour(now), 7);
    for i in 7..10 {
        send(i, &deny);
    }
    drop(tx);
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("the consumer ends when the channel closes")
        .unwrap();
    assert_eq!(violations.last_hour(now), 10);
}

use super::*;
use crate::testutil::{out, RecExt};
use podwarden_policy::AppProtocol;

fn learned_store(root: &Path) -> Store {
    let s = Store::open(root, "shop/checkout").unwrap();
    let mut l = s.load_learner(None).unwrap();
    l.ingest(
        &out("192.0.2.1:443", 1, AppProtocol::Tls)
            .named(&["api.example"])
            .by("/app"),
    );
    l.ingest(&out("203.0.113.7:4444", 1, AppProtocol::Opaque).by("/usr/bin/nc"));
    s.save_learner(&l).unwrap();
    s
}

#[test]
fn workload_names_are_checked() {
    let root = Path::new("/tmp");
    assert!(Store::open(root, "shop/checkout").is_ok());
    for bad in [
        "shop",
        "../x/y",
        "shop/../../etc",
        "Shop/x",
        "/x",
        "a/b/c",
        "a/.b",
    ] {
        assert!(Store::open(root, bad).is_err(), "{bad}");
    }
}

#[test]
fn approve_select_reject_history_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let s = learned_store(dir.path());
    assert!(s.current().unwrap().is_none());
    // 2 rules + 2 processes + resolving only listed names (none learned).
    assert_eq!(s.diff().unwrap().proposals().count(), 5);

    // reject nc; it is no longer proposed
    let nc_rule = "out-opaque-203.0.113.7-4444".to_string();
    s.reject(
        &[nc_rule.clone(), "process:/usr/bin/nc".into()],
        "alice",
        Some("netcat is not ours"),
    )
    .unwrap();
    let d = s.diff().unwrap();
    assert_eq!(d.rejected, 2);
    assert!(d
        .entries
        .iter()
        .all(|e| !e.id.contains("nc") && e.id != nc_rule));
    assert!(s.reject(&["nope".into()], "alice", None).is_err());

    // approve one rule: v1 with that rule and its process, recorded
    let v1 = s
        .approve(
            &Selection::Ids(vec![
                "out-tls-api.example-443".into(),
                crate::diff::NAMES_LISTED_ID.into(),
            ]),
            "bob",
            None,
        )
        .unwrap();
    assert_eq!(
        v1.spec.dns.allowed_names,
        podwarden_policy::model::AllowedNames::Listed
    );
    assert_eq!(v1.kind, DocumentKind::WorkloadPolicy);
    assert_eq!(v1.metadata.version, 1);
    assert_eq!(v1.metadata.approved_by.as_deref(), Some("bob"));
    assert!(v1.metadata.approved_at.is_some());
    assert_eq!(v1.spec.rules.len(), 1);
    assert_eq!(
        v1.spec
            .processes
            .iter()
            .map(|p| p.exe.as_str())
            .collect::<Vec<_>>(),
        vec!["/app"]
    );
    assert!(v1.spec.processes[0].evidence.is_some());
    assert_eq!(s.policy(1).unwrap(), v1);
    assert!(s.diff().unwrap().is_empty());
    assert!(
        s.approve(&Selection::All, "bob", None).is_err(),
        "empty diff"
    );
    assert!(s
        .approve(&Selection::Ids(vec!["ghost".into()]), "bob", None)
        .is_err());

    // new traffic, approve all with a mode switch: v2
    let mut l = s.load_learner(None).unwrap();
    l.ingest(
        &out("192.0.2.5:6379", 1, AppProtocol::Opaque)
            .named(&["redis.shop.svc.cluster.local"])
            .by("/app"),
    );
    s.save_learner(&l).unwrap();
    let v2 = s
        .approve(&Selection::All, "carol", Some(Mode::Protect))
        .unwrap();
    assert_eq!(v2.metadata.version, 2);
    assert_eq!(v2.spec.mode, Mode::Protect);
    assert_eq!(v2.spec.rules.len(), 2);

    // rollback writes v3 == v1 content
    let v3 = s.rollback(1, "dave").unwrap();
    assert_eq!(v3.metadata.version, 3);
    assert_eq!(v3.spec.rules, v1.spec.rules);
    assert_eq!(v3.spec.mode, v1.spec.mode);
    assert!(s.rollback(9, "dave").is_err());
    let h = s.history().unwrap();
    assert_eq!(
        h.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(h[1].approved_by.as_deref(), Some("carol"));

    let kinds: Vec<_> = s.decisions().unwrap().into_iter().map(|d| d.kind).collect();
    assert_eq!(
        kinds,
        vec![
            DecisionKind::Reject,
            DecisionKind::Approve,
            DecisionKind::Approve,
            DecisionKind::Rollback
        ]
    );
    // a restart of everything: the same store reopened sees the same state
    let again = Store::open(dir.path(), "shop/checkout").unwrap();
    assert_eq!(again.current().unwrap().unwrap(), v3);
    assert_eq!(again.rejected().unwrap().len(), 2);
}

#[test]
fn missing_and_corrupt_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), "a/b").unwrap();
    let e = s.diff().unwrap_err().to_string();
    assert!(e.contains("no baseline for a/b"), "{e}");
    std::fs::create_dir_all(s.dir()).unwrap();
    std::fs::write(s.baseline_path(), "kind: [").unwrap();
    assert!(matches!(s.baseline(), Err(LearnerError::Yaml { .. })));
    std::fs::write(s.dir().join("decisions.jsonl"), "{bad\n").unwrap();
    assert!(matches!(s.rejected(), Err(LearnerError::Json { .. })));
}

#[test]
fn a_rejected_rule_that_changes_is_proposed_again() {
    let dir = tempfile::tempdir().unwrap();
    let s = learned_store(dir.path());
    let id = "out-opaque-203.0.113.7-4444".to_string();
    s.reject(std::slice::from_ref(&id), "alice", None).unwrap();
    // more of the same: still hidden
    let mut l = s.load_learner(None).unwrap();
    l.ingest(&out("203.0.113.7:4444", 9, AppProtocol::Opaque).by("/usr/bin/nc"));
    s.save_learner(&l).unwrap();
    assert!(s.diff().unwrap().entries.iter().all(|e| e.id != id));
    // a different process under the same id was never reviewed
    l.ingest(&out("203.0.113.7:4444", 9, AppProtocol::Opaque).by("/bin/bash"));
    s.save_learner(&l).unwrap();
    let d = s.diff().unwrap();
    assert!(
        d.entries.iter().any(|e| e.id == id),
        "changed rule must be proposed again"
    );
}

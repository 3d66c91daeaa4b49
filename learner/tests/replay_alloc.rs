//! Replay grouping allocates nothing for a record that lands in an existing
//! group (the property the throughput target rests on). A counting global
//! allocator sees every allocation this test's thread makes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use podwarden_learner::replay::Replay;
use podwarden_policy::{
    AppProtocol, Decision, Direction, Flow, FlowRecord, HttpRequestInfo, Mode, ProcessInfo,
    RecordKind,
};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: as for `dealloc`, and `new_size` is passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

fn records() -> Vec<(FlowRecord, Decision)> {
    let mut v = Vec::new();
    for i in 0..40u16 {
        let mut flow = Flow::connection(
            if i % 2 == 0 {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            format!("192.0.2.{}:{}", i % 5 + 1, 443).parse().unwrap(),
            format!("198.51.100.2:{}", 8000 + i % 3).parse().unwrap(),
        );
        flow.protocol = AppProtocol::Http;
        flow.peer_names = vec!["API.Example.".into(), format!("svc{}.example", i % 4)];
        flow.process = Some(ProcessInfo {
            pid: 1,
            exe: "/app/bin".into(),
            cmdline: Vec::new(),
            uid: 1000,
        });
        flow.http = Some(HttpRequestInfo {
            method: if i % 3 == 0 { "get" } else { "POST" }.into(),
            host: None,
            path: format!("/users/{}/orders/{}", i * 7, i % 2),
            target: None,
        });
        let rule = (i % 4 != 0).then(|| format!("r{}", i % 3).into());
        let rec = FlowRecord {
            id: format!("f{i}"),
            start_ms: 1_700_000_000_000 + u64::from(i),
            duration_ms: 1,
            flow,
            bytes_sent: 1,
            bytes_received: 1,
            decision: Decision::allow_learning(),
            kind: RecordKind::Request,
            status: None,
        };
        v.push((rec, Decision::new(Mode::Protect, rule)));
    }
    v
}

#[test]
fn a_record_of_an_existing_group_allocates_nothing() {
    let obs = records();
    let mut r = Replay::new();
    let before = allocs();
    for (rec, d) in &obs {
        r.observe(rec, d);
    }
    let first_pass = allocs() - before;
    // Sanity: the counter works and new groups do allocate.
    assert!(first_pass > 0);

    let before = allocs();
    for _ in 0..5 {
        for (rec, d) in &obs {
            r.observe(rec, d);
        }
    }
    assert_eq!(allocs() - before, 0, "allocations on existing groups");
    assert_eq!(r.records(), 6 * obs.len() as u64);
}

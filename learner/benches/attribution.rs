//! Cost of process attribution: a cache hit (netlink lookup, one readlink
//! and an exe check), a miss that finds the owner among recently seen pids,
//! and a cold miss (empty index: rescan of every pid in /proc).

use std::net::{TcpListener, TcpStream};

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use podwarden_learner::process::{procfs, ProcessResolver, ProcfsResolver, SocketTuple};

fn bench(c: &mut Criterion) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let conn = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let _server = l.accept().unwrap();
    let t = SocketTuple {
        local: conn.local_addr().unwrap(),
        remote: conn.peer_addr().unwrap(),
    };
    let r = ProcfsResolver::new();
    assert!(r.resolve(&t).is_some(), "cannot attribute own socket");
    let pids = procfs::list_pids(std::path::Path::new("/proc"))
        .map(|p| p.len())
        .unwrap_or(0);
    eprintln!("attribution bench: {pids} pids in /proc");

    c.bench_function("attribution/sock_diag_lookup", |b| {
        b.iter(|| black_box(r.socket_inode(&t)))
    });
    c.bench_function("attribution/hit", |b| b.iter(|| black_box(r.resolve(&t))));
    // New connection of a process that owned a recent socket: the index
    // misses, the targeted rescan finds it in the first (hot) pid.
    c.bench_function("attribution/miss_hot_pid", |b| {
        b.iter_batched(
            || {
                let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
                let s = l.accept().unwrap();
                (c, s)
            },
            |(c, s)| {
                let t = SocketTuple {
                    local: c.local_addr().unwrap(),
                    remote: c.peer_addr().unwrap(),
                };
                let p = r.resolve(&t);
                black_box(p);
                (c, s)
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function("attribution/miss_cold_full_rescan", |b| {
        b.iter(|| {
            r.clear_cache();
            black_box(r.resolve(&t))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The learner as the data path uses it: shared between connection tasks,
//! snapshotted to the store on a timer and at shutdown, restored at start —
//! so learning survives a proxy restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use podwarden_policy::{FlowRecord, PolicyDocument};

use crate::error::LearnerError;
use crate::learn::{Learner, LearnerConfig};
use crate::store::Store;

pub struct LearningSink {
    learner: Mutex<Learner>,
    store: Store,
    dirty: AtomicBool,
}

impl LearningSink {
    /// Restores the stored state of the store's workload, or starts fresh
    /// with `config` (a stored state keeps its own configuration).
    pub fn open(store: Store, config: Option<LearnerConfig>) -> Result<Self, LearnerError> {
        let learner = store.load_learner(config)?;
        Ok(LearningSink {
            learner: Mutex::new(learner),
            store,
            dirty: AtomicBool::new(false),
        })
    }

    /// Ingests one record; a poisoned lock (a panic elsewhere) drops it
    /// rather than spreading the panic into the data path.
    pub fn record(&self, rec: &FlowRecord) {
        if let Ok(mut l) = self.learner.lock() {
            l.ingest(rec);
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// Writes the snapshot and baseline when something was learned since the
    /// last flush. Returns whether it wrote.
    pub fn flush(&self) -> Result<bool, LearnerError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(false);
        }
        // Clone under the lock, write outside it: ingest never waits on disk.
        let snapshot = self
            .learner
            .lock()
            .map_err(|_| LearnerError::Store("learner lock poisoned".into()))?
            .clone();
        if let Err(e) = self.store.save_learner(&snapshot) {
            self.dirty.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(true)
    }

    pub fn baseline(&self) -> Result<PolicyDocument, LearnerError> {
        self.learner
            .lock()
            .map(|l| l.baseline())
            .map_err(|_| LearnerError::Store("learner lock poisoned".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{out, RecExt};
    use podwarden_policy::AppProtocol;

    #[test]
    fn survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let open =
            || LearningSink::open(Store::open(dir.path(), "shop/app").unwrap(), None).unwrap();
        let s = open();
        assert!(!s.flush().unwrap(), "nothing learned, nothing written");
        s.record(
            &out("192.0.2.1:443", 1, AppProtocol::Tls)
                .named(&["a.example"])
                .by("/app"),
        );
        assert!(s.flush().unwrap());
        assert!(!s.flush().unwrap());
        let before = s.baseline().unwrap();
        drop(s);
        let s = open();
        assert_eq!(s.baseline().unwrap(), before);
        s.record(
            &out("192.0.2.2:443", 2, AppProtocol::Tls)
                .named(&["a.example"])
                .by("/app"),
        );
        s.flush().unwrap();
        let stored = Store::open(dir.path(), "shop/app")
            .unwrap()
            .baseline()
            .unwrap();
        assert_eq!(stored.spec.rules[0].evidence.as_ref().unwrap().count, 2);
    }
}

//! The one decision hook the data path calls, hot-swappable at runtime.
//!
//! Every connection and every HTTP request calls [`DecisionHook::decide`].
//! A policy reload builds and validates its new `Decide` off the hot path
//! and calls [`DecisionHook::swap`]; readers never take a lock. Connections
//! that already loaded the previous hook keep it for the decision in flight.

use std::sync::Arc;

use arc_swap::ArcSwap;
use podwarden_policy::{AllowAll, Decide, Decision, Flow};

#[derive(Clone)]
pub struct DecisionHook {
    current: Arc<ArcSwap<Box<dyn Decide>>>,
}

impl Default for DecisionHook {
    fn default() -> Self {
        DecisionHook::new(Box::new(AllowAll))
    }
}

impl DecisionHook {
    pub fn new(initial: Box<dyn Decide>) -> Self {
        DecisionHook {
            current: Arc::new(ArcSwap::from_pointee(initial)),
        }
    }

    /// Replaces the decision function for every later decision, everywhere
    /// (all clones of this hook share it). Returns the previous one.
    pub fn swap(&self, next: Box<dyn Decide>) -> Arc<Box<dyn Decide>> {
        self.current.swap(Arc::new(next))
    }

    pub fn decide(&self, flow: &Flow) -> Decision {
        self.current.load().decide(flow)
    }
}

impl std::fmt::Debug for DecisionHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecisionHook")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podwarden_policy::{Action, Direction, Mode};

    struct DenyAll;
    impl Decide for DenyAll {
        fn decide(&self, _flow: &Flow) -> Decision {
            Decision::new(Mode::Protect, None)
        }
    }

    #[test]
    fn swap_is_seen_by_clones() {
        let hook = DecisionHook::default();
        let clone = hook.clone();
        let f = Flow::connection(
            Direction::Outbound,
            "192.0.2.1:80".parse().unwrap(),
            "192.0.2.2:1".parse().unwrap(),
        );
        assert_eq!(clone.decide(&f).action, Action::Allow);
        hook.swap(Box::new(DenyAll));
        assert_eq!(clone.decide(&f).action, Action::Deny);
    }
}

//! The loaded, immutable rule set: engine settings plus per-phase rule
//! programs with skipAfter jumps resolved at load.

use crate::model::{EngineMode, Item};
use crate::prefilter::Prefilter;
use crate::txnames::TxNames;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimitAction {
    Reject,
    ProcessPartial,
}

/// Engine settings from the Sec* configuration directives.
#[derive(Debug, Clone)]
pub struct Config {
    pub engine: EngineMode,
    pub request_body_access: bool,
    pub response_body_access: bool,
    pub request_body_limit: usize,
    pub request_body_no_files_limit: usize,
    pub request_body_limit_action: BodyLimitAction,
    pub response_body_limit: usize,
    pub response_body_limit_action: BodyLimitAction,
    pub response_mime_types: Vec<String>,
    pub argument_separator: u8,
    pub arguments_limit: usize,
    pub json_depth_limit: usize,
    pub component_signatures: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            engine: EngineMode::On,
            request_body_access: false,
            response_body_access: false,
            request_body_limit: 13_107_200,
            request_body_no_files_limit: 131_072,
            request_body_limit_action: BodyLimitAction::Reject,
            response_body_limit: 524_288,
            response_body_limit_action: BodyLimitAction::ProcessPartial,
            response_mime_types: vec!["text/plain".into(), "text/html".into()],
            argument_separator: b'&',
            arguments_limit: 1000,
            json_depth_limit: 512,
            component_signatures: Vec::new(),
        }
    }
}

/// One phase's rules in order, with the index each skipAfter jumps to.
#[derive(Debug)]
pub struct Phase {
    pub items: Vec<Item>,
    /// For a rule at index i with skipAfter, the index of the item to continue after.
    pub jumps: Vec<Option<usize>>,
}

/// A compiled rule set, cheap to share: `Arc<RuleSet>` across connections.
#[derive(Debug)]
pub struct RuleSet {
    pub config: Config,
    pub phases: [Phase; 5],
    pub rule_count: usize,
    /// Literal gates in front of the operators (see [`crate::prefilter`]).
    pub prefilter: Prefilter,
    /// TX names written literally in the rules, by slot.
    pub tx_names: TxNames,
}

impl RuleSet {
    pub fn new(config: Config, mut phases: [Vec<Item>; 5]) -> RuleSet {
        let tx_names = TxNames::assign(&mut phases);
        let prefilter = Prefilter::build(&mut phases);
        let mut rule_count = 0;
        let phases = phases.map(|items| {
            let mut markers: HashMap<&str, Vec<usize>> = HashMap::new();
            let mut ids: HashMap<String, usize> = HashMap::new();
            for (i, it) in items.iter().enumerate() {
                match it {
                    Item::Marker(m) => markers.entry(m.as_str()).or_default().push(i),
                    Item::Rule(r) => {
                        ids.insert(r.id.to_string(), i);
                    }
                }
            }
            let jumps = items
                .iter()
                .enumerate()
                .map(|(i, it)| match it {
                    Item::Rule(r) => r.skip_after.as_ref().and_then(|m| {
                        markers
                            .get(m.as_str())
                            .and_then(|v| v.iter().copied().find(|&j| j > i))
                            .or_else(|| ids.get(m).copied().filter(|&j| j > i))
                            .or(Some(items.len()))
                    }),
                    Item::Marker(_) => None,
                })
                .collect();
            rule_count += items.iter().filter(|i| matches!(i, Item::Rule(_))).count();
            Phase { items, jumps }
        });
        RuleSet {
            config,
            phases,
            rule_count,
            prefilter,
            tx_names,
        }
    }

    pub fn shared(self) -> Arc<RuleSet> {
        Arc::new(self)
    }
}

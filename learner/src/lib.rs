//! Learner: flow records to baselines.

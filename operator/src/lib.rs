//! Operator: webhook and controllers.

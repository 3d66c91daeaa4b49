//! corpus placeholder

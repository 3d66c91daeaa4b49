//! Harness for end-to-end tests: network namespaces, processes, cleanup.

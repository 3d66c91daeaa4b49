//! DLP sensors and streaming scanner.

//! Unit tests of the Go config import.

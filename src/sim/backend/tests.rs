//! Integration-style tests of the demo backend over real sockets.

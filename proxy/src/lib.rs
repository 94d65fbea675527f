//! walb-proxy: the proxy daemon (wlog → indexed wdiff, one retrying send queue per archive).
//! It must not reach into another daemon's files.

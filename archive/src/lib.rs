//! walb-archive: the archive daemon (base image + wdiff chain, apply, merge, restore, replication).
//! It must not reach into another daemon's files.

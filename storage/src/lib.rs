//! walb-storage: the storage daemon (volume states, done record, snapshot queue, wlog extraction
//! and transfer, full and hash backup as client). It must not reach into another daemon's files.

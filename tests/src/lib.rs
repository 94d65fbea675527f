//! walb-tests: multi-process acceptance tests. Real binaries as child processes, real files,
//! loop devices where root allows. It must not mock a server.

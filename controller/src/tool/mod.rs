//! `walb-tool`: offline tools for wlogs, wdiffs and images.

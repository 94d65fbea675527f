//! walb-proto: the `.proto` files of every gRPC service and their generated tonic code.
//! It must not hold logic.

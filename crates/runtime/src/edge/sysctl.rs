//! `net.ipv4.tcp_migrate_req`, which lets the kernel hand connections queued on a closing
//! `SO_REUSEPORT` socket to another socket of its group, so that Caddy's reloads reset none.

const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// True when the kernel hands connections queued on a closing `SO_REUSEPORT` socket to another
/// socket of its group (`net.ipv4.tcp_migrate_req`), which Caddy's reloads need to reset none.
pub fn listener_migration_enabled() -> bool {
    std::fs::read_to_string(MIGRATE_REQ).is_ok_and(|value| value.trim() == "1")
}

/// Turns `net.ipv4.tcp_migrate_req` on when it is off and we may; warns when it stays off.
pub(super) fn enable_listener_migration() {
    match std::fs::read_to_string(MIGRATE_REQ) {
        Ok(value) if value.trim() == "1" => {}
        Ok(_) => match std::fs::write(MIGRATE_REQ, "1") {
            Ok(()) => tracing::info!(
                "set net.ipv4.tcp_migrate_req = 1, so Caddy's reloads reset no waiting connection"
            ),
            Err(error) => tracing::warn!(
                %error,
                "net.ipv4.tcp_migrate_req is 0 and cannot be set: each route change may reset \
                 connections Caddy has not accepted yet; set it to 1 (sysctl) to avoid that"
            ),
        },
        Err(error) => tracing::warn!(
            %error,
            "this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14 and later have it): each \
             route change may reset connections Caddy has not accepted yet"
        ),
    }
}

//! The `[raft]` leader-suspicion settings: parsed, validated with the field named, and turned
//! into the engine's configuration by `replica_config`.

use synod_core::Validate;
use synod_raft::{LeaderSuspicion, PhiSuspicion};
use synod_server::ServerConfig;
use synod_server::server::replica_config;

const TWO_NODES: &str = r#"
node_id = 2
data_dir = "data/2"
[[members]]
id = 1
peer = "127.0.0.1:7001"
resp = "127.0.0.1:6001"
http = "127.0.0.1:8001"
[[members]]
id = 2
peer = "127.0.0.1:7002"
resp = "127.0.0.1:6002"
http = "127.0.0.1:8002"
"#;

fn parse(raft_section: &str) -> Result<ServerConfig, String> {
    let text = format!("{TWO_NODES}[raft]\n{raft_section}");
    ServerConfig::parse(&text, Vec::new()).map_err(|error| error.to_string())
}

#[test]
fn the_default_is_phi_accrual_and_timeout_chooses_the_randomized_timeout() {
    // Checks a config without the setting gives phi-accrual at the default threshold, and
    // `leader_suspicion = "timeout"` the classic randomized election timeout.
    let config = parse("").unwrap();
    let LeaderSuspicion::PhiAccrual(phi) = replica_config(&config).raft.leader_suspicion else {
        panic!("phi-accrual expected by default");
    };
    assert_eq!(phi.threshold, 8.0);
    let config = parse("leader_suspicion = \"timeout\"").unwrap();
    assert_eq!(
        replica_config(&config).raft.leader_suspicion,
        LeaderSuspicion::RandomizedTimeout
    );
}

#[test]
fn phi_suspicion_is_scaled_to_the_server_timing() {
    // Checks `leader_suspicion = "phi"` with a threshold gives the engine phi-accrual
    // suspicion at that threshold, with the floor (a tick past the timeout), jitter,
    // deviation floor and pause derived from the configured ticks (10 ms ticks, 300 ms
    // election timeout, 50 ms heartbeats), and that the result passes the engine's own
    // validation.
    let config = parse("leader_suspicion = \"phi\"\nphi_threshold = 12.5").unwrap();
    let raft = replica_config(&config).raft;
    raft.validate().unwrap();
    let LeaderSuspicion::PhiAccrual(phi) = raft.leader_suspicion else {
        panic!("phi-accrual expected");
    };
    assert_eq!(
        phi,
        PhiSuspicion {
            threshold: 12.5,
            window_size: 100,
            std_deviation_min: synod_core::Duration::from_millis(25),
            acceptable_pause: synod_core::Duration::from_millis(50),
            floor_ticks: 31,
            jitter_ticks: 10,
        }
    );
}

#[test]
fn bad_suspicion_settings_are_refused_by_name() {
    // Checks an out-of-range threshold and an unknown mode are refused naming the field.
    let error = parse("leader_suspicion = \"phi\"\nphi_threshold = 0.5").unwrap_err();
    assert_eq!(
        error,
        "config: raft.phi_threshold (0.5) must be between 1 and 100"
    );
    let error = parse("leader_suspicion = \"gossip\"").unwrap_err();
    assert!(error.contains("gossip"), "{error}");
}

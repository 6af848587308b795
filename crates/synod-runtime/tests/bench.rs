//! The actor chain benchmark, run small: it must deliver every message (timing is not
//! checked; `synod bench actors` prints it).

use synod_runtime::{RuntimeError, bench_actor_chain};

#[tokio::test]
async fn bench_actor_chain_delivers_every_message_in_order() {
    // Checks that every token sent into the chain comes back, in order, for a short and a
    // longer chain, and that the throughput figures are computed.
    for (chain_length, messages_count) in [(1, 10), (16, 1_000)] {
        let report = bench_actor_chain(chain_length, messages_count)
            .await
            .unwrap();
        assert_eq!(report.delivered_count, messages_count);
        assert_eq!(report.reordered_count, 0);
        assert_eq!(report.chain_length, chain_length);
        assert!(report.messages_per_second > 0.0);
    }
}

#[tokio::test]
async fn bench_actor_chain_refuses_bad_sizes_naming_the_field() {
    // Checks that an empty chain or no messages is refused with the field named.
    let error = bench_actor_chain(0, 10).await.unwrap_err();
    assert!(
        matches!(&error, RuntimeError::Config(e) if e.field == "chain_length"),
        "{error}"
    );
    let error = bench_actor_chain(3, 0).await.unwrap_err();
    assert!(
        matches!(&error, RuntimeError::Config(e) if e.field == "messages_count"),
        "{error}"
    );
}

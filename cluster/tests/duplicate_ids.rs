//! Two message types pinned to the same stable name (and so the same wire id) are reported
//! when a node starts, naming both types; the node does not start.

use actix_cluster::prelude::*;

mod billing {
    use actix_cluster::prelude::*;

    #[cluster_message(result = "()", name = "shop.Charge")]
    #[derive(Serialize, Deserialize)]
    pub(crate) struct Charge(pub(crate) u64);
}

mod payments {
    use actix_cluster::prelude::*;

    #[cluster_message(result = "()", name = "shop.Charge")]
    #[derive(Serialize, Deserialize)]
    pub(crate) struct Charge(pub(crate) u64);
}

#[actix_rt::test]
async fn start_reports_both_types_that_share_a_wire_id() {
    assert_eq!(<billing::Charge as ClusterMessage>::WIRE_ID, <payments::Charge as ClusterMessage>::WIRE_ID);
    let config = ClusterConfig::new().node_name("node-1").bind("127.0.0.1:0").build().expect("config");
    let err = ClusterSystem::new("dups", config).start().await.expect_err("duplicate wire id");
    let StartError::DuplicateMessageId { id, first, second } = &err else {
        panic!("expected DuplicateMessageId, got {err}");
    };
    assert_eq!(*id, <billing::Charge as ClusterMessage>::WIRE_ID);
    assert!(first.contains("billing::Charge"), "{first}");
    assert!(second.contains("payments::Charge"), "{second}");
    let text = err.to_string();
    assert!(text.contains("name = \\\"...\\\"") || text.contains("name = \"...\""), "says how to fix it: {text}");
}

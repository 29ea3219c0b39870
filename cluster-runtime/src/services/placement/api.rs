//! Asking the placement service where a new actor goes.

use tokio::sync::oneshot;

use crate::error::ClusterError;
use crate::node::service::Input;
use crate::node::system::ClusterSystem;
use crate::proto::placement::Placement;
use crate::proto::wire::channel::Channel;
use crate::services::placement::PlacementService;

impl ClusterSystem {
    /// The node an actor placed by `placement` (with `key`) would go to now (each call
    /// moves a round-robin placement on).
    pub(crate) async fn choose_node(&self, placement: Placement, key: Option<String>) -> Result<String, ClusterError> {
        let (tx, rx) = oneshot::channel();
        self.node.to_control(Input::Call(
            Channel::PLACEMENT,
            Box::new(move |service, cx| {
                if let Some(p) = service.as_any_mut().downcast_mut::<PlacementService>() {
                    p.decide(cx, placement, key, tx);
                }
            }),
        ));
        match rx.await {
            Ok(decision) => Ok(decision?),
            Err(_) => Err(ClusterError::Shutdown),
        }
    }
}

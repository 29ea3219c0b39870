//! Asking the placement service where a new actor goes.

use tokio::sync::oneshot;

use crate::error::ClusterError;
use crate::node::service::Input;
use crate::node::system::ClusterSystem;
use crate::proto::placement::Strategy;
use crate::proto::wire::channel::Channel;
use crate::services::placement::PlacementService;

impl ClusterSystem {
    /// The node an actor placed by `strategy` would go to now (each call moves a
    /// round-robin strategy on).
    pub(crate) async fn choose_node(&self, strategy: Strategy) -> Result<String, ClusterError> {
        let (tx, rx) = oneshot::channel();
        self.node.to_control(Input::Call(
            Channel::PLACEMENT,
            Box::new(move |service, cx| {
                if let Some(p) = service.as_any_mut().downcast_mut::<PlacementService>() {
                    p.decide(cx, strategy, tx);
                }
            }),
        ));
        match rx.await {
            Ok(decision) => Ok(decision?),
            Err(_) => Err(ClusterError::Shutdown),
        }
    }
}

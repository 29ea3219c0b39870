use actix_cluster::prelude::*;

/// The attribute implements `KeyedActor`: `Default`, with the key in `id`.
#[distributed_actor(messages(), keyed = "id")]
#[derive(Default, Serialize, Deserialize)]
struct Cart {
    id: String,
    items: u32,
}

/// The user implements `KeyedActor`.
#[distributed_actor(messages(), keyed)]
#[derive(Serialize, Deserialize)]
struct Session {
    user: String,
}

impl KeyedActor for Session {
    fn from_key(key: &str) -> Self {
        Session { user: key.to_uppercase() }
    }

    fn passivate_after() -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(60))
    }
}

fn main() {
    let cart = Cart::from_key("cart-42");
    assert_eq!((cart.id.as_str(), cart.items), ("cart-42", 0));
    assert_eq!(Cart::passivate_after(), None);
    assert_eq!(Session::from_key("ann").user, "ANN");
    assert_eq!(Session::passivate_after(), Some(std::time::Duration::from_secs(60)));
}

//! Every keyword the attributes accept, in one place.

pub(crate) const RESULT: &str = "result";
pub(crate) const NAME: &str = "name";
pub(crate) const MESSAGES: &str = "messages";
pub(crate) const FORMAT: &str = "format";
pub(crate) const MANUAL_ACTOR: &str = "manual_actor";
pub(crate) const PLACEMENT: &str = "placement";
pub(crate) const KEYED: &str = "keyed";
pub(crate) const RECOVERY: &str = "recovery";
pub(crate) const REPLICAS: &str = "replicas";
pub(crate) const SNAPSHOT_EVERY: &str = "snapshot_every";

/// Arguments of `#[cluster_message]`.
pub(crate) const MESSAGE_ARGS: &[&str] = &[RESULT, NAME];
/// Arguments of `#[distributed_actor]`.
pub(crate) const ACTOR_ARGS: &[&str] =
    &[MESSAGES, NAME, FORMAT, MANUAL_ACTOR, PLACEMENT, KEYED, RECOVERY, REPLICAS, SNAPSHOT_EVERY];
/// Values of `recovery = "..."`.
pub(crate) const RECOVERIES: &[&str] = &["restart", "none"];
/// Values of `placement = "..."` without an argument.
pub(crate) const PLACEMENTS: &[&str] = &["local", "round_robin", "random", "least_loaded", "consistent_hash"];
/// Values of `placement = "...:<argument>"`.
pub(crate) const PLACEMENT_PREFIXES: &[&str] = &["node:", "role:", "custom:"];
/// Every form of `placement = "..."`, for error messages.
pub(crate) const PLACEMENT_FORMS: &[&str] = &[
    "local",
    "round_robin",
    "random",
    "least_loaded",
    "consistent_hash",
    "node:<name>",
    "role:<role>",
    "custom:<name>",
];

/// Values of `format = "..."`.
pub(crate) const FORMATS: &[&str] = &["postcard", "json"];

/// `a`, `b` and `c` rendered as "`a`, `b`, `c`".
pub(crate) fn list(words: &[&str]) -> String {
    words.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", ")
}

//! Every keyword the attributes accept, in one place.

pub(crate) const RESULT: &str = "result";
pub(crate) const NAME: &str = "name";
pub(crate) const MESSAGES: &str = "messages";
pub(crate) const FORMAT: &str = "format";
pub(crate) const MANUAL_ACTOR: &str = "manual_actor";

/// Arguments of `#[cluster_message]`.
pub(crate) const MESSAGE_ARGS: &[&str] = &[RESULT, NAME];
/// Arguments of `#[distributed_actor]`.
pub(crate) const ACTOR_ARGS: &[&str] = &[MESSAGES, NAME, FORMAT, MANUAL_ACTOR];
/// Values of `format = "..."`.
pub(crate) const FORMATS: &[&str] = &["postcard", "json"];

/// `a`, `b` and `c` rendered as "`a`, `b`, `c`".
pub(crate) fn list(words: &[&str]) -> String {
    words.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", ")
}

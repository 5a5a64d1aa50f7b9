//! Agents and their tokens.

use rand::distr::{Alphanumeric, SampleString};
use wharf_store::Store;

use crate::core::now_millis;

/// A new agent token: a recognisable prefix and 40 random alphanumerics (about 238 bits).
pub(crate) fn new_agent_token() -> String {
    format!(
        "wharf_agent_{}",
        Alphanumeric.sample_string(&mut rand::rng(), 40)
    )
}

/// Issues a fresh token for the agent named `name`, creating the agent when it does not exist.
pub(crate) async fn issue_agent_token(store: &Store, name: &str) -> anyhow::Result<String> {
    let token = new_agent_token();
    let hash = wharf_store::hash_token(&token);
    if store.agent_by_name(name).await?.is_some() {
        store.replace_agent_token(name, &hash).await?;
    } else {
        store.create_agent(name, &hash, now_millis()).await?;
    }
    Ok(token)
}

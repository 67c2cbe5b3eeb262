//! Configuration problems found when an ActiveCampaign connection starts.

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A sync's options or mapping, or a setting they need: `file: key: reason`.
    #[error(transparent)]
    Config(#[from] billsync_config::ConfigError),
}

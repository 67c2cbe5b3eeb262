//! Configuration problems found when an ActiveCampaign connection starts.

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{file}: {key}: {reason}")]
    Mapping {
        file: String,
        key: String,
        reason: String,
    },
}

//! The endpoint ids the service hosts (SPEC §1) and the sampling preset each one selects.

/// The target endpoint: few-step distilled sampling without CFG.
pub const FLASH_ENDPOINT: &str = "wan/v2.6/reference-to-video/flash";
/// The quality endpoint: the same input and output, full-step sampling with CFG.
pub const STANDARD_ENDPOINT: &str = "wan/v2.6/reference-to-video";

/// Which sampling preset a request runs with; chosen by the endpoint it was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// `wan/v2.6/reference-to-video/flash`.
    Flash,
    /// `wan/v2.6/reference-to-video`.
    Standard,
}

impl Preset {
    /// The preset of an endpoint id, or `None` for an id this service does not host.
    pub fn from_endpoint_id(id: &str) -> Option<Self> {
        match id.trim_matches('/') {
            FLASH_ENDPOINT => Some(Self::Flash),
            STANDARD_ENDPOINT => Some(Self::Standard),
            _ => None,
        }
    }

    /// The endpoint id that selects this preset.
    pub fn endpoint_id(self) -> &'static str {
        match self {
            Self::Flash => FLASH_ENDPOINT,
            Self::Standard => STANDARD_ENDPOINT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_ids_round_trip() {
        for preset in [Preset::Flash, Preset::Standard] {
            assert_eq!(Preset::from_endpoint_id(preset.endpoint_id()), Some(preset));
        }
        assert_eq!(Preset::from_endpoint_id("wan/v2.6/text-to-video"), None);
    }
}

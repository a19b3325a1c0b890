//! Usage pricing (SPEC §4): what a completed request is charged.
//!
//! The standard price per output second is set per resolution by the operator; the flash
//! endpoint is charged 50 % of it with audio and 25 % without. Amounts are whole
//! micro-dollars, so sums over any number of requests are exact.

use crate::{Preset, Resolution, ValidInput};

/// Micro-dollars in a dollar.
pub const MICROUSD_PER_USD: i64 = 1_000_000;

/// The operator's standard prices, in micro-dollars per output second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prices {
    /// Per second at 720p (default $0.10).
    pub per_second_720p: i64,
    /// Per second at 1080p (default $0.15).
    pub per_second_1080p: i64,
}

impl Default for Prices {
    fn default() -> Self {
        Self {
            per_second_720p: 100_000,
            per_second_1080p: 150_000,
        }
    }
}

/// What a request costs once it completes successfully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// Seconds of output video (the `X-Fal-Billable-Units` of its result).
    pub billable_seconds: i64,
    /// The price, in micro-dollars.
    pub cost_microusd: i64,
}

impl Prices {
    /// Dollars per second (an operator's setting) to micro-dollars; `None` for a negative,
    /// non-finite or absurd (over $1 000 000 a second) price.
    pub fn microusd_from_usd(usd: f64) -> Option<i64> {
        (usd.is_finite() && (0.0..=1e6).contains(&usd))
            .then(|| (usd * MICROUSD_PER_USD as f64).round() as i64)
    }

    /// The standard price of one second at `resolution`.
    pub fn per_second(&self, resolution: Resolution) -> i64 {
        match resolution {
            Resolution::P720 => self.per_second_720p,
            Resolution::P1080 => self.per_second_1080p,
        }
    }

    /// The charge of `input` on `preset`'s endpoint: the standard endpoint pays the full
    /// price, flash half of it with audio and a quarter without.
    pub fn charge(&self, preset: Preset, input: &ValidInput) -> Charge {
        let seconds = i64::from(input.duration.seconds());
        let full = self.per_second(input.resolution) * seconds;
        let cost_microusd = match (preset, input.enable_audio) {
            (Preset::Standard, _) => full,
            (Preset::Flash, true) => full / 2,
            (Preset::Flash, false) => full / 4,
        };
        Charge {
            billable_seconds: seconds,
            cost_microusd,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ValidateOptions, validate};
    use serde_json::json;

    fn input(resolution: &str, duration: &str, audio: bool) -> ValidInput {
        validate(
            &json!({"prompt": "Character1 waves", "image_urls": ["https://example.com/a.png"],
                    "resolution": resolution, "duration": duration, "enable_audio": audio}),
            &ValidateOptions::default(),
        )
        .unwrap()
    }

    /// Every combination against SPEC §4's defaults ($0.10/s at 720p, $0.15/s at 1080p).
    #[test]
    fn prices_follow_the_spec() {
        let prices = Prices::default();
        let cases = [
            (Preset::Standard, "720p", "5", true, 500_000),
            (Preset::Standard, "720p", "5", false, 500_000),
            (Preset::Standard, "1080p", "10", false, 1_500_000),
            (Preset::Flash, "720p", "5", true, 250_000),
            (Preset::Flash, "720p", "10", false, 250_000),
            (Preset::Flash, "1080p", "5", true, 375_000),
            (Preset::Flash, "1080p", "10", false, 375_000),
        ];
        for (preset, resolution, duration, audio, microusd) in cases {
            let charge = prices.charge(preset, &input(resolution, duration, audio));
            assert_eq!(
                charge.cost_microusd, microusd,
                "{preset:?} {resolution} {duration}s audio={audio}"
            );
            assert_eq!(charge.billable_seconds, duration.parse::<i64>().unwrap());
        }
        assert_eq!(Prices::microusd_from_usd(0.1), Some(100_000));
        assert_eq!(Prices::microusd_from_usd(-1.0), None);
        assert_eq!(Prices::microusd_from_usd(f64::NAN), None);
    }
}

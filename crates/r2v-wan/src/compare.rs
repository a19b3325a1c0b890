//! How far an output is from its reference, for the golden-tensor tests and the GPU checks.
//!
//! A NaN or an infinity on either side is an error, never a small difference: `f32::max`
//! drops NaN, so a fold of it would let an all-NaN output pass any tolerance.

/// The differences between an output and its reference (all finite).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    /// The largest `|got − want|`.
    pub max_abs: f32,
    /// The mean `|got − want|`.
    pub mean_abs: f32,
    /// The largest `|want|`: the scale relative tolerances are taken against.
    pub scale: f32,
    /// The mean `|want|`.
    pub mean_scale: f32,
}

impl Difference {
    /// `max_abs / scale`.
    pub fn relative(&self) -> f32 {
        self.max_abs / self.scale
    }

    /// `mean_abs / mean_scale`.
    pub fn mean_relative(&self) -> f32 {
        self.mean_abs / self.mean_scale
    }

    /// `Ok` when `max_abs ≤ rel · scale`.
    pub fn within(&self, rel: f32) -> Result<(), String> {
        if self.max_abs <= rel * self.scale {
            Ok(())
        } else {
            Err(format!(
                "max |Δ| {:e} > {rel:e} × max|reference| {}",
                self.max_abs, self.scale
            ))
        }
    }
}

/// Compares `got` with `want` element by element.
pub fn difference(got: &[f32], want: &[f32]) -> Result<Difference, String> {
    if got.len() != want.len() {
        return Err(format!(
            "{} values against {} in the reference",
            got.len(),
            want.len()
        ));
    }
    if got.is_empty() {
        return Err("no values to compare".to_owned());
    }
    if let Some(i) = want.iter().position(|v| !v.is_finite()) {
        return Err(format!("the reference has {} at index {i}", want[i]));
    }
    if let Some(i) = got.iter().position(|v| !v.is_finite()) {
        let count = got.iter().filter(|v| !v.is_finite()).count();
        return Err(format!(
            "{count} of {} values are not finite (the first, at index {i}, is {})",
            got.len(),
            got[i]
        ));
    }
    let (mut max_abs, mut sum_abs, mut scale, mut sum_scale) = (0f32, 0f64, 0f32, 0f64);
    for (g, w) in got.iter().zip(want) {
        let delta = (g - w).abs();
        max_abs = max_abs.max(delta);
        sum_abs += f64::from(delta);
        scale = scale.max(w.abs());
        sum_scale += f64::from(w.abs());
    }
    let n = got.len() as f64;
    Ok(Difference {
        max_abs,
        mean_abs: (sum_abs / n) as f32,
        scale,
        mean_scale: (sum_scale / n) as f32,
    })
}

#[cfg(test)]
mod tests {
    use super::difference;

    #[test]
    fn nan_and_infinity_never_pass() {
        let want = [1.0, -2.0, 0.5];
        assert!(
            difference(&[1.0, -2.0, 0.5], &want)
                .unwrap()
                .within(0.0)
                .is_ok()
        );
        assert!(difference(&[f32::NAN; 3], &want).is_err());
        assert!(difference(&[1.0, f32::NAN, 0.5], &want).is_err());
        assert!(difference(&[1.0, f32::INFINITY, 0.5], &want).is_err());
        assert!(difference(&want, &[1.0, f32::NAN, 0.5]).is_err());
        assert!(difference(&[1.0], &want).is_err());
        let d = difference(&[1.1, -2.0, 0.5], &want).unwrap();
        assert!((d.max_abs - 0.1).abs() < 1e-6 && d.scale == 2.0);
        assert!(d.within(0.01).is_err() && d.within(0.06).is_ok());
    }
}

//! Growth models for capacity planning: a straight line, or a power law when the points
//! clearly bend, fitted by least squares and extrapolated to a target size.

/// Which curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    /// y = a + b·x
    Linear { a: f64, b: f64 },
    /// y = c·x^k (fitted in log–log space).
    Power { c: f64, k: f64 },
}

/// A fitted model and how well it fits (R² on the original scale).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    pub model: Model,
    pub r2: f64,
}

impl Fit {
    pub fn eval(&self, x: f64) -> f64 {
        match self.model {
            Model::Linear { a, b } => a + b * x,
            Model::Power { c, k } => c * x.powf(k),
        }
    }

    /// `y = 812 + 341·x (R² 0.998)`.
    pub fn describe(&self) -> String {
        let m = match self.model {
            Model::Linear { a, b } => format!("linear: y = {a:.4} + {b:.6}·x"),
            Model::Power { c, k } => format!("power: y = {c:.6}·x^{k:.4}"),
        };
        format!("{m} (R² {:.4})", self.r2)
    }
}

fn least_squares(pts: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return None;
    }
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let b = sxy / sxx;
    Some((my - b * mx, b))
}

fn r2(pts: &[(f64, f64)], f: impl Fn(f64) -> f64) -> f64 {
    let n = pts.len() as f64;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let ss_tot: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    let ss_res: f64 = pts.iter().map(|p| (p.1 - f(p.0)).powi(2)).sum();
    if ss_tot == 0.0 {
        if ss_res == 0.0 { 1.0 } else { 0.0 }
    } else {
        1.0 - ss_res / ss_tot
    }
}

/// Fit the points (at least two distinct x). A power law is chosen only with three or
/// more points, all positive, when it leaves less than half the linear fit's residual:
/// two points always get a line, the simplest model they cannot contradict.
pub fn fit(pts: &[(f64, f64)]) -> Option<Fit> {
    let (a, b) = least_squares(pts)?;
    let linear = Fit {
        model: Model::Linear { a, b },
        r2: r2(pts, |x| a + b * x),
    };
    if pts.len() < 3 || pts.iter().any(|p| p.0 <= 0.0 || p.1 <= 0.0) {
        return Some(linear);
    }
    let logs: Vec<(f64, f64)> = pts.iter().map(|p| (p.0.ln(), p.1.ln())).collect();
    let Some((lc, k)) = least_squares(&logs) else {
        return Some(linear);
    };
    let c = lc.exp();
    let power = Fit {
        model: Model::Power { c, k },
        r2: r2(pts, |x| c * x.powf(k)),
    };
    if 1.0 - power.r2 < 0.5 * (1.0 - linear.r2) {
        Some(power)
    } else {
        Some(linear)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_lines_exactly_and_extrapolates() {
        let f = fit(&[(10.0, 25.0), (100.0, 205.0)]).unwrap();
        assert!(matches!(f.model, Model::Linear { .. }));
        assert!((f.eval(1000.0) - 2005.0).abs() < 1e-6);
        assert!((f.r2 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn prefers_a_power_law_when_points_bend() {
        let pts: Vec<(f64, f64)> = [1e3, 1e4, 1e5, 1e6]
            .iter()
            .map(|&x: &f64| (x, 3.0 * x.powf(0.5)))
            .collect();
        let f = fit(&pts).unwrap();
        assert!(matches!(f.model, Model::Power { .. }), "{f:?}");
        assert!((f.eval(1e8) - 3.0 * 1e4).abs() / 3e4 < 1e-6);
        assert!(fit(&[(1.0, 1.0)]).is_none());
        assert!(fit(&[(1.0, 1.0), (1.0, 2.0)]).is_none());
    }
}

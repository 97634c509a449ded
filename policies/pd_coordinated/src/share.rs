//! Step 4(b) of `pd_coordinated`: splitting the total `N` between roles in `preferred` mode.
//!
//! base share (demand) and pressure share blend into a raw share; the raw shares are projected
//! exactly onto the preferred bands (not clipped and renormalised, which can leave a role outside its
//! band); largest remainder turns shares into counts, and a repair step moves units between roles to
//! honour min/max while keeping the sum at `N`.

use std::collections::BTreeMap;

use ebbtide_sdk::Decision;

use crate::{Aggregation, Band, Params};

/// Ties closer than this are ties: shares equal on paper may differ in their last bit.
const EPS: f64 = 1e-9;

pub struct RoleInput<'a> {
    pub name: &'a str,
    pub demand: u64,
    pub min: u64,
    pub max: u64,
    pub band: Option<Band>,
    pub running_metrics: &'a [BTreeMap<&'a str, f64>],
}

/// Desired counts per role (same order as `roles`, which is name order).
pub fn split(p: &Params, roles: &[RoleInput], n_raw: u64, d: &mut Decision) -> Vec<u64> {
    let count = roles.len();
    let n = n_raw.max(roles.iter().map(|r| r.min).sum());

    let base: Vec<f64> = if n_raw > 0 {
        roles.iter().map(|r| r.demand as f64 / n_raw as f64).collect()
    } else {
        vec![1.0 / count as f64; count]
    };
    let press = pressure_share(p, roles).unwrap_or_else(|| base.clone());
    let raw: Vec<f64> = base.iter().zip(&press).map(|(b, q)| (1.0 - p.alpha) * b + p.alpha * q).collect();

    let bands = bands(roles, d);
    let shares = project(&raw, &bands);

    // Largest remainder.
    let q: Vec<f64> = shares.iter().map(|s| s * n as f64).collect();
    let mut x: Vec<u64> = q.iter().map(|q| (q + EPS).floor().max(0.0) as u64).collect();
    let short = n.saturating_sub(x.iter().sum());
    let mut by_remainder: Vec<usize> = (0..count).collect();
    by_remainder.sort_by(|&a, &b| {
        let (ra, rb) = (q[a] - x[a] as f64, q[b] - x[b] as f64);
        if (ra - rb).abs() < EPS { a.cmp(&b) } else { rb.total_cmp(&ra) }
    });
    for &i in by_remainder.iter().take(short as usize) {
        x[i] += 1;
    }
    let rounded = x.clone();

    // Bounds repair with redistribution.
    for (xi, r) in x.iter_mut().zip(roles) {
        *xi = (*xi).clamp(r.min, r.max);
    }
    while x.iter().sum::<u64>() < n {
        let Some(i) = best(count, |i| (x[i] < roles[i].max).then(|| q[i] - x[i] as f64)) else { break };
        x[i] += 1;
    }
    while x.iter().sum::<u64>() > n {
        let Some(i) = best(count, |i| (x[i] > roles[i].min).then(|| x[i] as f64 - q[i])) else { break };
        x[i] -= 1;
    }

    for i in 0..count {
        let (lo, hi) = bands[i];
        let share = if n > 0 { x[i] as f64 / n as f64 } else { 0.0 };
        if x[i] != rounded[i] && (share < lo - EPS || share > hi + EPS) {
            d.diagnose(
                "band_clamped",
                format!(
                    "role {}: min/max replicas put its share at {share:.3}, outside its band [{lo}, {hi}]",
                    roles[i].name
                ),
            );
        }
    }
    x
}

/// The index maximising `score` (ties: the lower index, i.e. name asc); `None` where none qualifies.
fn best(count: usize, score: impl Fn(usize) -> Option<f64>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for i in 0..count {
        if let Some(s) = score(i)
            && best.is_none_or(|(_, b)| s > b + EPS)
        {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
}

/// Each pressure metric adds each role's fraction of the total; `None` when no metric contributed.
fn pressure_share(p: &Params, roles: &[RoleInput]) -> Option<Vec<f64>> {
    let mut contrib = vec![0.0; roles.len()];
    let mut any = false;
    for metric in &p.pressure_metrics {
        let values: Vec<f64> = roles
            .iter()
            .map(|r| {
                let reported: Vec<f64> =
                    r.running_metrics.iter().filter_map(|m| m.get(metric.name.as_str()).copied()).collect();
                match (reported.is_empty(), metric.agg) {
                    (true, _) => 0.0,
                    (false, Aggregation::Sum) => reported.iter().sum(),
                    (false, Aggregation::Mean) => reported.iter().sum::<f64>() / reported.len() as f64,
                }
            })
            .map(|v| if v > 0.0 { v } else { 0.0 })
            .collect();
        let total: f64 = values.iter().sum();
        if total > 0.0 {
            any = true;
            for (c, v) in contrib.iter_mut().zip(&values) {
                *c += v / total;
            }
        }
    }
    let total: f64 = contrib.iter().sum();
    (any && total > 0.0).then(|| contrib.iter().map(|c| c / total).collect())
}

/// `(lo, hi)` per role, with the diagnostics for invalid and infeasible bands.
fn bands(roles: &[RoleInput], d: &mut Decision) -> Vec<(f64, f64)> {
    let mut bands: Vec<(f64, f64)> = Vec::with_capacity(roles.len());
    for r in roles {
        bands.push(match r.band {
            None => (0.0, 1.0),
            Some(b) if 0.0 <= b.min_pct && b.min_pct <= b.max_pct && b.max_pct <= 100.0 => {
                (b.min_pct / 100.0, b.max_pct / 100.0)
            }
            Some(b) => {
                d.diagnose(
                    "invalid_band",
                    format!(
                        "role {}: preferred_share {}..{} is not 0 <= min_pct <= max_pct <= 100; ignored",
                        r.name, b.min_pct, b.max_pct
                    ),
                );
                (0.0, 1.0)
            }
        });
    }
    let (lo, hi): (f64, f64) = bands.iter().fold((0.0, 0.0), |(l, h), b| (l + b.0, h + b.1));
    if lo > 1.0 + EPS || hi < 1.0 - EPS {
        d.diagnose(
            "infeasible_bands",
            format!("the bands' minima sum to {lo:.3} and maxima to {hi:.3}; all bands ignored"),
        );
        bands.iter_mut().for_each(|b| *b = (0.0, 1.0));
    }
    bands
}

/// `s_r = clamp(λ·raw_r, lo_r, hi_r)` with λ >= 0 chosen so that `Σ s_r = 1`, solved exactly on the
/// segment between breakpoints where the sum crosses 1.
fn project(raw: &[f64], bands: &[(f64, f64)]) -> Vec<f64> {
    let at =
        |lambda: f64| -> Vec<f64> { raw.iter().zip(bands).map(|(r, (lo, hi))| (lambda * r).clamp(*lo, *hi)).collect() };
    let total = |lambda: f64| at(lambda).iter().sum::<f64>();
    let mut breakpoints: Vec<f64> = vec![0.0];
    for (r, (lo, hi)) in raw.iter().zip(bands) {
        if *r > 0.0 {
            breakpoints.push(lo / r);
            breakpoints.push(hi / r);
        }
    }
    breakpoints.sort_by(f64::total_cmp);
    breakpoints.dedup();
    if total(0.0) >= 1.0 - EPS {
        return at(0.0);
    }
    for pair in breakpoints.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if total(b) < 1.0 - EPS {
            continue;
        }
        // Inside (a, b) every term is either clamped (constant) or linear in λ.
        let mid = (a + b) / 2.0;
        let (mut fixed, mut slope) = (0.0, 0.0);
        for (r, (lo, hi)) in raw.iter().zip(bands) {
            let v = mid * r;
            if v <= *lo {
                fixed += lo;
            } else if v >= *hi {
                fixed += hi;
            } else {
                slope += r;
            }
        }
        let lambda = if slope > 0.0 { ((1.0 - fixed) / slope).clamp(a, b) } else { b };
        return at(lambda);
    }
    // No λ reaches 1: roles with raw share get their maximum; the repair step restores the sum.
    raw.iter().zip(bands).map(|(r, (lo, hi))| if *r > 0.0 { *hi } else { *lo }).collect()
}

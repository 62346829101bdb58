//! One colour per strategy, the same in every panel and every figure: the
//! benchmark's versions have fixed colours, and a strategy this tool does
//! not know (a newer kernel's, a renamed one) takes the next colour of a
//! palette kept apart from theirs, in order of first appearance among the
//! unknown ones, rather than failing the plot.

use plotters::style::{Color, Palette, Palette99, RGBColor};

/// The strategies in the benchmark's order, each with its colour.
const KNOWN: [(&str, RGBColor); 6] = [
    ("stock", RGBColor(60, 60, 60)),
    ("pidmap-once", RGBColor(31, 119, 180)),
    ("exit-deferred", RGBColor(255, 127, 14)),
    ("both", RGBColor(44, 160, 44)),
    ("v7.0", RGBColor(214, 39, 40)),
    ("lockless", RGBColor(148, 103, 189)),
];

/// Colours for strategies not in [`KNOWN`], none of them one of its.
const OTHERS: [RGBColor; 4] = [
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn is_known(strategy: &str) -> bool {
    KNOWN.iter().any(|(n, _)| *n == strategy)
}

/// The colour of `strategy` among the `plotted` ones: fixed for the
/// known ones; for others, by order of first appearance among the
/// unknown strategies of `plotted`, so adding or dropping a known version
/// moves no colour.
pub fn colour(strategy: &str, plotted: &[String]) -> RGBColor {
    if let Some((_, c)) = KNOWN.iter().find(|(n, _)| *n == strategy) {
        return *c;
    }
    let i = plotted
        .iter()
        .filter(|s| !is_known(s))
        .position(|s| s == strategy)
        .unwrap_or(0);
    OTHERS.get(i).copied().unwrap_or_else(|| {
        let c = Palette99::pick(i).to_rgba();
        RGBColor(c.0, c.1, c.2)
    })
}

/// Strategies in plotting order: known ones first, in the benchmark's
/// order, then the rest by first appearance.
pub fn strategies<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let names: Vec<&str> = names.into_iter().collect();
    let mut out: Vec<String> = KNOWN
        .iter()
        .filter(|(n, _)| names.contains(n))
        .map(|(n, _)| n.to_string())
        .collect();
    for n in names {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_strategy_keeps_its_colour_whatever_else_is_plotted() {
        let others = strings(&["stock", "mine", "both"]);
        assert_eq!(colour("both", &others), colour("both", &[]));
        assert_ne!(colour("both", &others), colour("stock", &others));
        assert_ne!(colour("mine", &others), colour("both", &others));
        let more = strings(&["v7.0", "mine", "lockless", "stock"]);
        assert_eq!(colour("mine", &others), colour("mine", &more));
    }

    #[test]
    fn every_version_and_unknown_strategy_has_its_own_colour() {
        let plotted = strings(&[
            "stock",
            "pidmap-once",
            "exit-deferred",
            "both",
            "v7.0",
            "lockless",
            "next",
            "other",
        ]);
        let colours: Vec<RGBColor> = plotted.iter().map(|s| colour(s, &plotted)).collect();
        for (i, a) in colours.iter().enumerate() {
            for b in &colours[i + 1..] {
                assert_ne!(a, b, "{plotted:?}");
            }
        }
    }

    #[test]
    fn known_versions_come_first_in_the_benchmarks_order() {
        let order = strategies(["next", "v7.0", "stock", "both", "next", "exit-deferred"]);
        assert_eq!(order, ["stock", "exit-deferred", "both", "v7.0", "next"]);
    }
}

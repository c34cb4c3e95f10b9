//! What a run's LLM calls cost: a price table kept as data (`prices.toml`, embedded),
//! overridable per model by the `run.prices` setting, and the arithmetic that turns a
//! run's token counts into US dollars.
//!
//! Input, output, cache writes and cache reads are priced apart: a cache read costs a
//! tenth of an input token and a cache write a quarter more, so summing them as input
//! would misstate a cached run by up to ten times. A model without a price has no cost
//! (`null`, with a note saying why), never a guess.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::summary::Usage;

/// The built-in table (USD per million tokens).
pub const BUILTIN_PRICES: &str = include_str!("prices.toml");

/// One model's prices, USD per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_write: f64,
    pub cache_read: f64,
}

impl Price {
    /// The cost in USD of these token counts, rounded to a billionth of a dollar (so
    /// `0.1 + 0.2` noise never reaches a summary).
    pub fn cost(&self, u: &Usage) -> f64 {
        let micro = u.input_tokens as f64 * self.input
            + u.output_tokens as f64 * self.output
            + u.cache_creation_input_tokens as f64 * self.cache_write
            + u.cache_read_input_tokens as f64 * self.cache_read;
        round_usd(micro / 1_000_000.0)
    }
}

pub fn round_usd(usd: f64) -> f64 {
    (usd * 1e9).round() / 1e9
}

/// Model id → prices.
#[derive(Clone, Debug, PartialEq)]
pub struct PriceTable {
    models: BTreeMap<String, Price>,
}

/// `anthropic:claude-sonnet-4-5-20250929` → `claude-sonnet-4-5`: the provider prefix
/// and an eight-digit date suffix are dropped, so a dated snapshot uses its family's
/// price.
pub fn normalise(model: &str) -> String {
    let m = model.trim();
    let m = m.strip_prefix("anthropic:").unwrap_or(m);
    match m.rsplit_once('-') {
        Some((head, date)) if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) => {
            head.to_string()
        }
        _ => m.to_string(),
    }
}

fn check_price(model: &str, p: &Price) -> Result<(), String> {
    for (name, v) in [
        ("input", p.input),
        ("output", p.output),
        ("cache_write", p.cache_write),
        ("cache_read", p.cache_read),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(format!(
                "the price `{name}` of `{model}` must be a number of USD per million tokens, 0 or more (got {v})"
            ));
        }
    }
    Ok(())
}

impl PriceTable {
    /// The table shipped with lackey.
    pub fn builtin() -> PriceTable {
        let models: BTreeMap<String, Price> =
            toml::from_str(BUILTIN_PRICES).expect("the built-in price table parses");
        PriceTable { models }
    }

    /// The built-in table with `overrides` (the `run.prices` setting: a JSON object
    /// `{"<model>": {"input", "output", "cache_write", "cache_read"}}`) on top.
    pub fn with_overrides(overrides: Option<&str>) -> Result<PriceTable, String> {
        let mut table = PriceTable::builtin();
        if let Some(text) = overrides.filter(|t| !t.trim().is_empty()) {
            for (model, price) in parse_overrides(text)? {
                table.models.insert(normalise(&model), price);
            }
        }
        Ok(table)
    }

    /// The price of `model` (matched after [`normalise`]).
    pub fn get(&self, model: &str) -> Option<Price> {
        self.models.get(&normalise(model)).copied()
    }

    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }
}

fn parse_overrides(text: &str) -> Result<BTreeMap<String, Price>, String> {
    let map: BTreeMap<String, Price> = serde_json::from_str(text).map_err(|e| {
        format!("prices must map a model to {{input, output, cache_write, cache_read}} in USD per million tokens: {e}")
    })?;
    for (model, p) in &map {
        check_price(model, p)?;
    }
    Ok(map)
}

/// The `run.prices` setting's check (a JSON object, as lackey.toml's table is stored).
pub fn validate_overrides(text: &str) -> Result<(), String> {
    parse_overrides(text).map(|_| ())
}

/// Why a run has no cost: the sentence `usage.cost_note` carries.
pub fn unknown_model_note(model: &str, table: &PriceTable) -> String {
    format!(
        "no price for model `{model}` (known: {}); add [run.prices.\"{}\"] with input, output, cache_write and cache_read to lackey.toml",
        table.models().collect::<Vec<_>>().join(", "),
        normalise(model)
    )
}

/// The agent a call's label belongs to: `fixer-2` → `fixer`.
pub fn agent_kind(label: &str) -> &str {
    match label.split_once('-') {
        Some((kind, n)) if n.bytes().all(|b| b.is_ascii_digit()) => kind,
        _ => label,
    }
}

/// The run's usage with its cost: `total` and `by_agent` hold token counts; the result
/// carries `cost_usd` (total and per agent), the model, and a note when there is no
/// price.
pub fn priced(
    total: &Usage,
    by_agent: &BTreeMap<String, Usage>,
    model: &str,
    table: &PriceTable,
) -> Usage {
    let price = table.get(model);
    let mut out = Usage {
        llm_calls: total.llm_calls,
        input_tokens: total.input_tokens,
        output_tokens: total.output_tokens,
        cache_read_input_tokens: total.cache_read_input_tokens,
        cache_creation_input_tokens: total.cache_creation_input_tokens,
        cost_usd: price.map(|p| p.cost(total)),
        cost_note: match price {
            Some(_) => None,
            None => Some(unknown_model_note(model, table)),
        },
        model: Some(model.to_string()),
        by_agent: BTreeMap::new(),
    };
    for (label, u) in by_agent {
        let entry = out
            .by_agent
            .entry(agent_kind(label).to_string())
            .or_default();
        entry.llm_calls += u.llm_calls;
        entry.input_tokens += u.input_tokens;
        entry.output_tokens += u.output_tokens;
        entry.cache_read_input_tokens += u.cache_read_input_tokens;
        entry.cache_creation_input_tokens += u.cache_creation_input_tokens;
    }
    for a in out.by_agent.values_mut() {
        a.cost_usd = price.map(|p| p.cost(&a.tokens()));
    }
    out
}

/// `$0.0123`, `$1.24`, or `-` when unknown: cents for a dollar or more, four decimals
/// below (a short run costs fractions of a cent).
pub fn format_usd(cost: Option<f64>) -> String {
    match cost {
        None => "-".to_string(),
        Some(c) if c >= 1.0 => format!("${c:.2}"),
        Some(c) => format!("${c:.4}"),
    }
}

/// `12.3k`, `1.2M`: token counts for tables.
pub fn format_tokens(n: u64) -> String {
    if n >= 1_000_000 {
        format!("{:.1}M", n as f64 / 1e6)
    } else if n >= 10_000 {
        format!("{:.0}k", n as f64 / 1e3)
    } else if n >= 1_000 {
        format!("{:.1}k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64, write: u64, read: u64) -> Usage {
        Usage {
            llm_calls: 1,
            input_tokens: input,
            output_tokens: output,
            cache_creation_input_tokens: write,
            cache_read_input_tokens: read,
            ..Usage::default()
        }
    }

    #[test]
    fn each_token_kind_has_its_own_price() {
        let sonnet = PriceTable::builtin().get("claude-sonnet-4-5").unwrap();
        // One million of each kind costs exactly that kind's price.
        assert_eq!(sonnet.cost(&usage(1_000_000, 0, 0, 0)), 3.0);
        assert_eq!(sonnet.cost(&usage(0, 1_000_000, 0, 0)), 15.0);
        assert_eq!(sonnet.cost(&usage(0, 0, 1_000_000, 0)), 3.75);
        assert_eq!(sonnet.cost(&usage(0, 0, 0, 1_000_000)), 0.3);
        // 1200 in, 350 out, 2000 written, 10000 read:
        // 1200·3 + 350·15 + 2000·3.75 + 10000·0.30 = 3600 + 5250 + 7500 + 3000 = 19350 µ$.
        assert_eq!(sonnet.cost(&usage(1200, 350, 2000, 10_000)), 0.01935);
        // Cache reads priced as input would be ten times dearer.
        let as_input = sonnet.cost(&usage(10_000, 0, 0, 0));
        let as_read = sonnet.cost(&usage(0, 0, 0, 10_000));
        assert_eq!(as_input, 0.03);
        assert_eq!(as_read, 0.003);
        let haiku = PriceTable::builtin().get("claude-haiku-4-5").unwrap();
        assert_eq!(haiku.cost(&usage(1200, 350, 2000, 10_000)), 0.00645);
    }

    #[test]
    fn model_ids_are_normalised() {
        assert_eq!(normalise("claude-sonnet-4-5-20250929"), "claude-sonnet-4-5");
        assert_eq!(normalise("anthropic:claude-haiku-4-5"), "claude-haiku-4-5");
        assert_eq!(
            normalise("anthropic:claude-haiku-4-5-20251001"),
            "claude-haiku-4-5"
        );
        // A version number is not a date.
        assert_eq!(normalise("claude-sonnet-4-5"), "claude-sonnet-4-5");
        assert_eq!(normalise("model-2025"), "model-2025");
        let t = PriceTable::builtin();
        assert!(t.get("anthropic:claude-sonnet-4-5-20250929").is_some());
        assert!(t.get("claude-opus-9").is_none());
    }

    #[test]
    fn overrides_replace_and_add_models() {
        let t = PriceTable::with_overrides(Some(
            r#"{"claude-sonnet-4-5": {"input": 2, "output": 10, "cache_write": 2.5, "cache_read": 0.2},
                "anthropic:my-model-20260101": {"input": 1, "output": 1, "cache_write": 1, "cache_read": 1}}"#,
        ))
        .unwrap();
        assert_eq!(t.get("claude-sonnet-4-5").unwrap().input, 2.0);
        assert_eq!(t.get("my-model").unwrap().output, 1.0);
        // Untouched rows stay.
        assert_eq!(t.get("claude-haiku-4-5").unwrap().input, 1.0);
        let e = PriceTable::with_overrides(Some(r#"{"m": {"input": 1}}"#)).unwrap_err();
        assert!(e.contains("missing field"), "{e}");
        let e = validate_overrides(
            r#"{"m": {"input": -1, "output": 1, "cache_write": 1, "cache_read": 1}}"#,
        )
        .unwrap_err();
        assert!(e.contains("`input` of `m`"), "{e}");
        let e = validate_overrides(
            r#"{"m": {"input": 1, "output": 1, "cache_write": 1, "cache_read": 1, "x": 2}}"#,
        )
        .unwrap_err();
        assert!(e.contains("unknown field `x`"), "{e}");
    }

    #[test]
    fn a_run_is_priced_in_total_and_per_agent() {
        let mut by_agent = BTreeMap::new();
        by_agent.insert("scoper".to_string(), usage(1000, 100, 0, 0));
        by_agent.insert("executor".to_string(), usage(2000, 200, 500, 4000));
        by_agent.insert("fixer-1".to_string(), usage(300, 30, 0, 0));
        by_agent.insert("fixer-2".to_string(), usage(300, 30, 0, 1000));
        let mut total = Usage::default();
        for u in by_agent.values() {
            total.add(u);
        }
        let p = priced(
            &total,
            &by_agent,
            "claude-sonnet-4-5-20250929",
            &PriceTable::builtin(),
        );
        // 3600·3 + 360·15 + 500·3.75 + 5000·0.3 = 10800 + 5400 + 1875 + 1500 = 19575 µ$.
        assert_eq!(p.cost_usd, Some(0.019575));
        assert_eq!(p.cost_note, None);
        let keys: Vec<&str> = p.by_agent.keys().map(String::as_str).collect();
        assert_eq!(keys, ["executor", "fixer", "scoper"]);
        let fixer = &p.by_agent["fixer"];
        assert_eq!((fixer.llm_calls, fixer.input_tokens), (2, 600));
        // 600·3 + 60·15 + 1000·0.3 = 1800 + 900 + 300 = 3000 µ$.
        assert_eq!(fixer.cost_usd, Some(0.003));
        assert_eq!(p.by_agent["scoper"].cost_usd, Some(0.0045));
        let sum: f64 = p.by_agent.values().filter_map(|a| a.cost_usd).sum();
        assert!((sum - 0.019575).abs() < 1e-9);

        let unknown = priced(&total, &by_agent, "gpt-9", &PriceTable::builtin());
        assert_eq!(unknown.cost_usd, None);
        assert!(unknown.by_agent.values().all(|a| a.cost_usd.is_none()));
        let note = unknown.cost_note.unwrap();
        assert!(
            note.starts_with("no price for model `gpt-9`")
                && note.contains("[run.prices.\"gpt-9\"]"),
            "{note}"
        );
    }

    #[test]
    fn the_summary_serialises_cost_and_by_agent() {
        let mut by_agent = BTreeMap::new();
        by_agent.insert("executor".to_string(), usage(10, 1, 0, 0));
        let p = priced(
            &usage(10, 1, 0, 0),
            &by_agent,
            "nope",
            &PriceTable::builtin(),
        );
        let v = serde_json::to_value(&p).unwrap();
        assert!(v["cost_usd"].is_null());
        assert!(v.get("cost_usd").is_some());
        assert_eq!(v["by_agent"]["executor"]["input_tokens"], 10);
        assert!(v["by_agent"]["executor"]["cost_usd"].is_null());
        // Summaries written before costs existed still read.
        let old: Usage = serde_json::from_str(
            r#"{"llm_calls":1,"input_tokens":1,"output_tokens":1,"cache_read_input_tokens":0,"cache_creation_input_tokens":0}"#,
        )
        .unwrap();
        assert_eq!(old.cost_usd, None);
        assert!(old.by_agent.is_empty());
    }

    #[test]
    fn formats() {
        assert_eq!(format_usd(None), "-");
        assert_eq!(format_usd(Some(0.019575)), "$0.0196");
        assert_eq!(format_usd(Some(12.345)), "$12.35");
        assert_eq!(format_tokens(950), "950");
        assert_eq!(format_tokens(1234), "1.2k");
        assert_eq!(format_tokens(123_456), "123k");
        assert_eq!(format_tokens(2_500_000), "2.5M");
    }
}

//! Policy documents, compared by meaning.
//!
//! IAM returns policy documents URL-encoded, with statements, actions and resources in
//! whatever order it likes, and a single action as a string rather than a list. Two
//! documents are the same policy when their canonical forms are equal: decoded, parsed,
//! every action/resource/principal list a sorted set, statements sorted, object keys
//! sorted. Comparing canonical forms is what keeps `plan` from showing a change that
//! is not one (the churn Terraform users see on every apply).

use serde_json::{Map, Value};

/// Decode a document IAM returned (URL-encoded JSON) or one we wrote (plain JSON).
pub fn decode(doc: &str) -> String {
    let trimmed = doc.trim_start();
    if trimmed.starts_with('{') {
        doc.to_string()
    } else {
        percent_encoding::percent_decode_str(doc)
            .decode_utf8_lossy()
            .into_owned()
    }
}

fn sort_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), sort_keys(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}

/// A string or list of strings → a sorted, de-duplicated list.
fn as_set(v: &Value) -> Value {
    let mut items: Vec<String> = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect(),
        other => return other.clone(),
    };
    items.sort();
    items.dedup();
    Value::Array(items.into_iter().map(Value::String).collect())
}

fn canonical_statement(s: &Value) -> Value {
    let Some(m) = s.as_object() else {
        return sort_keys(s);
    };
    let mut out = Map::new();
    for (k, v) in m {
        let v = match k.as_str() {
            "Action" | "NotAction" | "Resource" | "NotResource" => as_set(v),
            "Principal" | "NotPrincipal" => match v {
                Value::Object(p) => {
                    Value::Object(p.iter().map(|(pk, pv)| (pk.clone(), as_set(pv))).collect())
                }
                other => other.clone(),
            },
            "Condition" => match v {
                Value::Object(ops) => Value::Object(
                    ops.iter()
                        .map(|(op, kv)| {
                            let inner = match kv {
                                Value::Object(kvs) => Value::Object(
                                    kvs.iter()
                                        .map(|(ck, cv)| (ck.clone(), as_set(cv)))
                                        .collect(),
                                ),
                                other => other.clone(),
                            };
                            (op.clone(), inner)
                        })
                        .collect(),
                ),
                other => other.clone(),
            },
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    sort_keys(&Value::Object(out))
}

/// The canonical form of a policy document.
pub fn canonical(doc: &str) -> anyhow::Result<Value> {
    let text = decode(doc);
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("a policy document is not JSON ({e}): {text}"))?;
    let mut out = Map::new();
    for (k, val) in v.as_object().cloned().unwrap_or_default() {
        if k == "Statement" {
            let list = match val {
                Value::Array(a) => a,
                single => vec![single],
            };
            let mut statements: Vec<Value> = list.iter().map(canonical_statement).collect();
            statements.sort_by_key(|s| s.to_string());
            statements.dedup();
            out.insert(k, Value::Array(statements));
        } else {
            out.insert(k, val);
        }
    }
    Ok(sort_keys(&Value::Object(out)))
}

/// Whether two documents are the same policy.
pub fn same(a: &str, b: &str) -> bool {
    match (canonical(a), canonical(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Fill `{{name}}` placeholders.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reordered_and_encoded_policies_are_the_same() {
        let ours = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:PutObject","s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]}]}"#;
        let theirs = "%7B%22Statement%22%3A%20%5B%7B%22Resource%22%3A%20%5B%22arn%3Aaws%3As3%3A%3A%3Ab%2F%2A%22%2C%20%22arn%3Aaws%3As3%3A%3A%3Ab%22%5D%2C%20%22Action%22%3A%20%5B%22s3%3AListBucket%22%2C%20%22s3%3AGetObject%22%2C%20%22s3%3APutObject%22%5D%2C%20%22Effect%22%3A%20%22Allow%22%7D%5D%2C%20%22Version%22%3A%20%222012-10-17%22%7D";
        assert!(same(ours, theirs));
        let single = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}}"#;
        let listed = r#"{"Version":"2012-10-17","Statement":[{"Action":["sts:AssumeRole"],"Effect":"Allow","Principal":{"Service":["ecs-tasks.amazonaws.com"]}}]}"#;
        assert!(same(single, listed));
    }

    #[test]
    fn a_real_change_is_a_change() {
        let a = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":"*"}]}"#;
        let b = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:DeleteObject"],"Resource":"*"}]}"#;
        assert!(!same(a, b));
    }

    #[test]
    fn templates_render() {
        assert_eq!(
            render("arn:{{p}}:s3:::{{b}}", &[("p", "aws"), ("b", "x")]),
            "arn:aws:s3:::x"
        );
    }
}

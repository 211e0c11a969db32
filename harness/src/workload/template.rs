//! Text with placeholders, as a declarative workload writes its requests:
//! `/runs/get?run_id=${id}`, `{"name": "${key}"}`. `${…}` never clashes with the braces of a
//! JSON body.

use std::fmt;

/// A value a request may carry, filled in per operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// The write's own key, unique in the run (`u2-17`): what the history keys it by.
    Key,
    /// The user's name (`u2`).
    User,
    /// A fresh UUID, one per operation.
    Uuid,
    /// The id the write's acknowledgement carried (its `id` pointer), or its key.
    Id,
    /// The id of an acknowledged write of that kind by the same user: `${id:create-run}`.
    IdOf(String),
    /// A run secret of the topology: `${secret:API_TOKEN}`.
    Secret(String),
    /// Milliseconds since the Unix epoch.
    NowMs,
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::Key => f.write_str("${key}"),
            Var::User => f.write_str("${user}"),
            Var::Uuid => f.write_str("${uuid}"),
            Var::Id => f.write_str("${id}"),
            Var::IdOf(k) => write!(f, "${{id:{k}}}"),
            Var::Secret(s) => write!(f, "${{secret:{s}}}"),
            Var::NowMs => f.write_str("${now_ms}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template(Vec<Part>);

/// What placeholders a template may use.
pub const VARS: &str = "${key}, ${user}, ${uuid}, ${id}, ${id:KIND}, ${secret:NAME}, ${now_ms}";

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("${") {
            if at > 0 {
                parts.push(Part::Text(rest[..at].to_string()));
            }
            let after = &rest[at + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("`${{` at `{}` is never closed", &rest[at..]))?;
            let name = &after[..end];
            let var = match name.split_once(':') {
                None => match name {
                    "key" => Var::Key,
                    "user" => Var::User,
                    "uuid" => Var::Uuid,
                    "id" => Var::Id,
                    "now_ms" => Var::NowMs,
                    _ => return Err(format!("unknown placeholder `${{{name}}}`; use {VARS}")),
                },
                Some(("id", kind)) if !kind.is_empty() => Var::IdOf(kind.to_string()),
                Some(("secret", s)) if !s.is_empty() => Var::Secret(s.to_string()),
                Some(_) => return Err(format!("unknown placeholder `${{{name}}}`; use {VARS}")),
            };
            parts.push(Part::Var(var));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template(parts))
    }

    /// The placeholders it uses.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.0.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Text(_) => None,
        })
    }

    /// The text with each placeholder filled by `value`; `None` when one has no value (a
    /// read-back path needing an id the write never got).
    pub fn render(&self, mut value: impl FnMut(&Var) -> Option<String>) -> Option<String> {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => out.push_str(&value(v)?),
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_json_braces_kept() {
        let t = Template::parse(r#"{"run_id": "${id:create-run}", "key": "${key}"}"#).unwrap();
        let out = t.render(|v| match v {
            Var::IdOf(k) if k == "create-run" => Some("r1".into()),
            Var::Key => Some("u0-1".into()),
            _ => None,
        });
        assert_eq!(out.unwrap(), r#"{"run_id": "r1", "key": "u0-1"}"#);
        assert_eq!(
            Template::parse("/x?id=${id}").unwrap().render(|_| None),
            None
        );
    }

    #[test]
    fn unknown_or_unclosed_placeholders_are_refused() {
        assert!(
            Template::parse("${nope}")
                .unwrap_err()
                .contains("unknown placeholder")
        );
        assert!(
            Template::parse("${key")
                .unwrap_err()
                .contains("never closed")
        );
        assert!(Template::parse("${id:}").is_err());
        let vars: Vec<String> = Template::parse("${secret:A}/${user}")
            .unwrap()
            .vars()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(vars, ["${secret:A}", "${user}"]);
    }
}

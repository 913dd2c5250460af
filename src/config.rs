//! `dossier.toml`: the index location, the sources, identifier patterns, roles
//! and API keys. Unknown keys and bad values are errors naming the file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use dossier_connectors::SourceSpec;
use serde::Deserialize;

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason} (create one with `dossier demo`, or pass --config PATH)")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The TOML is malformed, has an unknown key or a wrong value.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What was expected.
        message: String,
    },
    /// The values parse but do not make sense together.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// `[index]`: where the index and state live, and how to read phone numbers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexSection {
    /// Folder of the tantivy index and the state store (relative to the config file).
    pub path: PathBuf,
    /// Region for phone numbers written without a country code (ISO 3166 code).
    #[serde(default = "default_region")]
    pub default_region: String,
    /// Mail domains of the company itself: their senders are agents, not customers.
    #[serde(default)]
    pub own_domains: Vec<String>,
}

fn default_region() -> String {
    "US".into()
}

/// `[[identifiers]]`: a kind of customer identifier and how to spot it in text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifierSpec {
    /// Kind name (`order`, `account`, `invoice`); fields map to it as `id:NAME`.
    pub name: String,
    /// A regex finding it in free text (`ORD-?\d{6}`).
    pub pattern: String,
    /// Prefixes to strip when normalizing (`ORD`, `AC`); letters, dashes,
    /// spaces and leading zeros are folded away so `ORD-00104233` = `104233`.
    #[serde(default)]
    pub prefixes: Vec<String>,
}

/// `[roles.NAME]`: what a role may see.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Sources this role sees (`*` for all).
    #[serde(default)]
    pub sources: Vec<String>,
    /// True when sensitive values are shown unmasked.
    #[serde(default)]
    pub unmask: bool,
    /// True for administrators (re-index runs, subject exports).
    #[serde(default)]
    pub admin: bool,
}

/// `[[keys]]`: an API key, stored only as a hash.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// Who holds it.
    pub name: String,
    /// `blake3:HEX` of the key.
    pub hash: String,
    /// The role it grants.
    pub role: String,
}

/// `[privacy]`: which values are masked for roles without `unmask`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySection {
    /// Regexes of sensitive values in any text (government ids, card numbers); matches are
    /// masked but for their last four digits. Card-number-like matches must pass the Luhn check.
    #[serde(default = "default_mask_patterns")]
    pub mask_patterns: Vec<String>,
    /// Field names (case-insensitive) whose whole value is masked.
    #[serde(default = "default_mask_fields")]
    pub mask_fields: Vec<String>,
}

fn default_mask_patterns() -> Vec<String> {
    vec![
        // US social security numbers.
        r"\b\d{3}-\d{2}-\d{4}\b".into(),
        // Payment card numbers: 13 to 19 digits, in groups or not (Luhn-checked).
        r"\b\d{4}(?:[ -]?\d{4}){2}[ -]?\d{1,7}\b".into(),
    ]
}

fn default_mask_fields() -> Vec<String> {
    [
        "ssn",
        "social_security",
        "national_id",
        "tax_id",
        "passport",
        "dob",
        "date_of_birth",
        "birth_date",
        "birthdate",
        "card_number",
    ]
    .map(String::from)
    .to_vec()
}

impl Default for PrivacySection {
    fn default() -> Self {
        PrivacySection { mask_patterns: default_mask_patterns(), mask_fields: default_mask_fields() }
    }
}

/// `[server]`: where `dossier serve` listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address and port.
    #[serde(default = "default_listen")]
    pub listen: String,
}

fn default_listen() -> String {
    "127.0.0.1:7860".into()
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection { listen: default_listen() }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Index location and matching settings.
    pub index: IndexSection,
    /// The server.
    #[serde(default)]
    pub server: ServerSection,
    /// Identifier kinds.
    #[serde(default)]
    pub identifiers: Vec<IdentifierSpec>,
    /// The silos.
    #[serde(default)]
    pub sources: Vec<SourceSpec>,
    /// Roles.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleSpec>,
    /// API keys.
    #[serde(default)]
    pub keys: Vec<KeySpec>,
    /// Masking of sensitive values.
    #[serde(default)]
    pub privacy: PrivacySection,
    /// Folder of the config file; relative paths resolve against it.
    #[serde(skip)]
    pub base: PathBuf,
}

const MENTION_KINDS: &[&str] = &[
    "person",
    "first_name",
    "last_name",
    "email",
    "phone",
    "company",
    "address",
    "city",
    "state",
    "postcode",
    "dob",
    "status",
    "ignore",
];

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &path.display().to_string(), &base)
    }

    /// Parses config text; `name` is used in messages, `base` resolves relative paths.
    pub fn parse(text: &str, name: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.rsplit('\n').next().map(|l| l.chars().count() + 1).unwrap_or(1);
                    (line, column)
                })
                .unwrap_or((1, 1));
            ConfigError::Parse { path: name.to_string(), line, column, message: e.message().to_string() }
        })?;
        cfg.base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base.to_path_buf() };
        cfg.validate(name)?;
        Ok(cfg)
    }

    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::Invalid { path: name.to_string(), message };
        let mut seen = BTreeSet::new();
        let id_kinds: BTreeSet<&str> = self.identifiers.iter().map(|i| i.name.as_str()).collect();
        for i in &self.identifiers {
            regex::Regex::new(&i.pattern).map_err(|e| bad(format!("identifier `{}`: bad pattern: {e}", i.name)))?;
        }
        for s in &self.sources {
            if s.name.is_empty() || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(bad(format!("source name `{}`: use letters, digits, `-` and `_` only", s.name)));
            }
            if !seen.insert(s.name.as_str()) {
                return Err(bad(format!("source `{}` is defined twice", s.name)));
            }
            for r in &s.roles {
                if !self.roles.contains_key(r) {
                    return Err(bad(format!("source `{}` names role `{r}`, which no [roles.{r}] defines", s.name)));
                }
            }
            let maps = s.fields.iter().chain(s.tables.iter().flat_map(|t| t.fields.iter()));
            for (field, kind) in maps {
                let ok = MENTION_KINDS.contains(&kind.as_str())
                    || kind.strip_prefix("id:").is_some_and(|k| id_kinds.contains(k));
                if !ok {
                    return Err(bad(format!(
                        "source `{}`: field `{field}` maps to `{kind}`; expected one of {} or id:KIND with KIND from [[identifiers]]",
                        s.name,
                        MENTION_KINDS.join(", ")
                    )));
                }
            }
            if let Some(sched) = &s.schedule {
                crate::schedule::Schedule::parse(sched)
                    .map_err(|e| bad(format!("source `{}`: schedule: {e}", s.name)))?;
            }
            if s.watch
                && !matches!(s.kind, dossier_connectors::SourceKind::Files | dossier_connectors::SourceKind::Tickets)
            {
                return Err(bad(format!(
                    "source `{}`: `watch` is for files and tickets sources; give a database a `schedule`",
                    s.name
                )));
            }
            if let Some(b) = &s.budget {
                crate::schedule::parse_duration(b).map_err(|e| bad(format!("source `{}`: budget: {e}", s.name)))?;
            }
        }
        for k in &self.keys {
            if !self.roles.contains_key(&k.role) {
                return Err(bad(format!("key `{}` grants role `{}`, which is not defined", k.name, k.role)));
            }
            if crate::access::parse_key_hash(&k.hash).is_none() {
                return Err(bad(format!(
                    "key `{}`: hash must be `blake3:` and 64 hex digits (print one with `dossier keys hash`)",
                    k.name
                )));
            }
        }
        for (name, r) in &self.roles {
            if name == crate::access::ALL_VIEW
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(bad(format!("role name `{name}`: use letters, digits, `-` and `_` only")));
            }
            for s in r.sources.iter().filter(|s| *s != "*") {
                if self.source(s).is_none() {
                    return Err(bad(format!("role `{name}` names source `{s}`, which no [[sources]] defines")));
                }
            }
        }
        for p in &self.privacy.mask_patterns {
            regex::Regex::new(p).map_err(|e| bad(format!("privacy.mask_patterns: bad pattern {p:?}: {e}")))?;
        }
        Ok(())
    }

    /// The index folder.
    pub fn index_dir(&self) -> PathBuf {
        self.base.join(&self.index.path)
    }

    /// A source by name.
    pub fn source(&self, name: &str) -> Option<&SourceSpec> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// The sources `role` may see: those its `[roles]` entry lists (`*` for all) and those
    /// whose own `roles` name it. `None` means every source.
    pub fn role_sources(&self, role: &str) -> Option<BTreeSet<String>> {
        let spec = self.roles.get(role);
        if spec.is_some_and(|r| r.sources.iter().any(|s| s == "*")) {
            return None;
        }
        let mut out: BTreeSet<String> = spec.map(|r| r.sources.iter().cloned().collect()).unwrap_or_default();
        out.extend(self.sources.iter().filter(|s| s.roles.iter().any(|r| r == role)).map(|s| s.name.clone()));
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[index]\npath = \"data\"\n";

    #[test]
    fn minimal_config() {
        let c = Config::parse(MIN, "t.toml", Path::new("/x")).unwrap();
        assert_eq!(c.index_dir(), PathBuf::from("/x/data"));
        assert_eq!(c.index.default_region, "US");
    }

    #[test]
    fn unknown_key_names_line() {
        let text = format!("{MIN}\n[[sources]]\nname = \"a\"\nkind = \"files\"\nlocation = \".\"\ncolour = \"red\"\n");
        let e = Config::parse(&text, "t.toml", Path::new(".")).unwrap_err().to_string();
        assert!(e.starts_with("t.toml:8:"), "{e}");
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn bad_kind_and_role_are_explained() {
        let text = format!("{MIN}\n[[sources]]\nname = \"a\"\nkind = \"ftp\"\nlocation = \".\"\n");
        let e = Config::parse(&text, "t.toml", Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("t.toml:6:") && e.contains("ftp"), "{e}");
        let text =
            format!("{MIN}\n[[sources]]\nname = \"a\"\nkind = \"files\"\nlocation = \".\"\nroles = [\"legal\"]\n");
        let e = Config::parse(&text, "t.toml", Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("role `legal`"), "{e}");
        let text = format!(
            "{MIN}\n[[sources]]\nname = \"a\"\nkind = \"files\"\nlocation = \".\"\nfields = {{ x = \"id:order\" }}\n"
        );
        let e = Config::parse(&text, "t.toml", Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("id:KIND"), "{e}");
    }
}

//! Source schedules: `every 15m` style intervals or cron expressions (with seconds).

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// When a source is re-indexed.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// A fixed interval.
    Every(Duration),
    /// A cron expression.
    Cron(Box<cron::Schedule>),
}

impl Schedule {
    /// Parses `every 30s|15m|2h|1d` or a cron expression such as `0 */15 * * * *`.
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let t = s.trim();
        if let Some(rest) = t.strip_prefix("every ") {
            let rest = rest.trim();
            let (num, unit) = rest.split_at(rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len()));
            let n: u64 = num.parse().map_err(|_| format!("`{t}`: expected a number, as in `every 15m`"))?;
            let secs = match unit.trim() {
                "s" => n,
                "m" => n * 60,
                "h" => n * 3600,
                "d" => n * 86_400,
                u => return Err(format!("`{t}`: unknown unit `{u}`; use s, m, h or d")),
            };
            if secs == 0 {
                return Err(format!("`{t}`: the interval must be positive"));
            }
            return Ok(Schedule::Every(Duration::from_secs(secs)));
        }
        cron::Schedule::from_str(t).map(|c| Schedule::Cron(Box::new(c))).map_err(|e| {
            format!("`{t}` is neither `every N[smhd]` nor a cron expression (sec min hour day month weekday): {e}")
        })
    }

    /// The next run after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => chrono::Duration::from_std(*d).ok().map(|d| after + d),
            Schedule::Cron(c) => c.after(&after).next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_cron() {
        let now = Utc::now();
        let s = Schedule::parse("every 15m").unwrap();
        assert_eq!((s.next_after(now).unwrap() - now).num_minutes(), 15);
        assert!(Schedule::parse("0 */5 * * * *").unwrap().next_after(now).is_some());
        assert!(Schedule::parse("every 0m").is_err());
        assert!(Schedule::parse("sometimes").unwrap_err().contains("cron"));
    }
}

//! A mapping: which bucket prefix is mirrored into which local directory.
//!
//! Written `s3://BUCKET/PREFIX=DIR`, optionally with the bucket's region when it differs
//! from `AWS_REGION` (an Ireland and a London bucket on one node):
//! `s3://BUCKET/PREFIX?region=eu-west-2=DIR`.

use std::fmt;
use std::path::PathBuf;

/// One bucket prefix mirrored into one directory, and served at `/targets/<name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, `""` or ending in `/`; only the `*.json` objects directly under it
    /// are mirrored.
    pub prefix: String,
    /// The bucket's region, when it differs from the default (`AWS_REGION`).
    pub region: Option<String>,
    /// The local directory Prometheus' `file_sd_configs` reads.
    pub dir: PathBuf,
    /// The last component of `dir`: the mapping's name in `/targets/<name>`, logs and
    /// metrics.
    pub name: String,
}

impl Mapping {
    /// Parses `s3://BUCKET[/PREFIX][?region=REGION]=DIR`.
    ///
    /// The source is read left to right, so the `=` of `?region=` is never mistaken for
    /// the separator; a `PREFIX` therefore cannot contain `=` or `?`.
    pub fn parse(text: &str) -> Result<Mapping, String> {
        let syntax = "use s3://BUCKET/PREFIX=DIR";
        let rest = text
            .trim()
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{text:?} does not start with s3:// ({syntax})"))?;

        let bucket_end = rest.find(['/', '?', '=']).unwrap_or(rest.len());
        let bucket = &rest[..bucket_end];
        if bucket.is_empty()
            || !bucket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(format!("{text:?} has no valid bucket name ({syntax})"));
        }
        let mut rest = &rest[bucket_end..];

        let mut prefix = String::new();
        if let Some(after_slash) = rest.strip_prefix('/') {
            let end = after_slash.find(['?', '=']).unwrap_or(after_slash.len());
            prefix = after_slash[..end].trim_start_matches('/').to_owned();
            if prefix.chars().any(char::is_control) {
                return Err(format!("{text:?} has a control character in its prefix"));
            }
            if prefix.split('/').any(|part| part == "..") {
                return Err(format!("{text:?} has a '..' segment in its prefix"));
            }
            if !prefix.is_empty() && !prefix.ends_with('/') {
                prefix.push('/');
            }
            rest = &after_slash[end..];
        }

        let mut region = None;
        if let Some(query) = rest.strip_prefix('?') {
            let value = query.strip_prefix("region=").ok_or_else(|| {
                format!("{text:?}: the only option after '?' is region=REGION ({syntax})")
            })?;
            let end = value
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(value.len());
            if end == 0 {
                return Err(format!("{text:?} has an empty region"));
            }
            region = Some(value[..end].to_owned());
            rest = &value[end..];
        }

        let dir = rest
            .strip_prefix('=')
            .ok_or_else(|| format!("{text:?} has no =DIR ({syntax})"))?;
        let dir = dir.trim();
        if dir.is_empty() {
            return Err(format!("{text:?} has an empty DIR ({syntax})"));
        }
        let dir = PathBuf::from(dir.trim_end_matches('/'));
        let name = dir
            .file_name()
            .and_then(|name| name.to_str())
            .filter(|name| !name.is_empty() && *name != "." && *name != "..")
            .ok_or_else(|| format!("{text:?}: DIR needs a last component naming it"))?
            .to_owned();
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(format!(
                "{text:?}: the last component of DIR ({name:?}) names /targets/{name}, so it \
                 may only have letters, digits, '.', '-' and '_'"
            ));
        }
        Ok(Mapping {
            bucket: bucket.to_owned(),
            prefix,
            region,
            dir,
            name,
        })
    }

    /// `s3://BUCKET/PREFIX`, for logs.
    pub fn source(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)?;
        if let Some(region) = &self.region {
            write!(f, "?region={region}")?;
        }
        write!(f, "={}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Mapping {
        Mapping::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn a_mapping_names_bucket_prefix_and_directory() {
        let m = parse("s3://gds-targets/active=/etc/prometheus/eu-west-1-targets/");
        assert_eq!(m.bucket, "gds-targets");
        assert_eq!(m.prefix, "active/");
        assert_eq!(m.region, None);
        assert_eq!(m.dir, PathBuf::from("/etc/prometheus/eu-west-1-targets"));
        assert_eq!(m.name, "eu-west-1-targets");
        assert_eq!(m.source(), "s3://gds-targets/active/");
    }

    #[test]
    fn prefixes_may_be_nested_or_empty() {
        assert_eq!(
            parse("s3://b/eu-west-2/active/=t").prefix,
            "eu-west-2/active/"
        );
        assert_eq!(parse("s3://b/=t").prefix, "");
        assert_eq!(parse("s3://b=t").prefix, "");
    }

    #[test]
    fn a_region_may_follow_the_prefix() {
        let m = parse("s3://london/active/?region=eu-west-2=/srv/london");
        assert_eq!(m.region.as_deref(), Some("eu-west-2"));
        assert_eq!(m.prefix, "active/");
        assert_eq!(m.dir, PathBuf::from("/srv/london"));
        assert_eq!(
            m.to_string(),
            "s3://london/active/?region=eu-west-2=/srv/london"
        );
        assert_eq!(parse(&m.to_string()), m);
    }

    #[test]
    fn malformed_mappings_say_what_is_wrong() {
        let cases = [
            ("/tmp/x", "does not start with s3://"),
            ("s3:///active=/x", "no valid bucket"),
            ("s3://b/active", "has no =DIR"),
            ("s3://b/active=", "empty DIR"),
            ("s3://b/active=/", "last component"),
            ("s3://b/active?x=1=/t", "region=REGION"),
            ("s3://b/active?region==/t", "empty region"),
            ("s3://b/../x=/t", "'..'"),
            ("s3://b/a=/tmp/my targets", "may only have"),
        ];
        for (text, expected) in cases {
            let err = Mapping::parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
